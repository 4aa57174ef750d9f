#!/usr/bin/env node
// Compares gazette's mrml output with the official MJML renderer, by what a
// reader sees and clicks (not by markup: the two differ in CSS, attribute
// order and whitespace).
//
// Usage: node scripts/compare_mjml.mjs DIR
//
// For every DIR/STEM.mjml (as `gazette preview --out DIR` writes them), renders
// it with the `mjml` package pinned in scripts/package-lock.json (all files in
// this one Node process), parses that HTML and gazette's DIR/STEM.html with
// node-html-parser, and requires the same:
//
//   * MJML validation: the official renderer reports no errors for STEM.mjml;
//   * <title> text, and hidden text (display:none: the inbox preheader);
//   * link targets: the multiset of a[href] values (entities decoded);
//   * link and button texts: the multiset of the texts of those <a>s, and
//     (when both of those match) of the text → href pairs, so no link swapped;
//   * image sources: the multiset of img[src] (with their alt text);
//   * visible text blocks, in order: the text between block-level element
//     boundaries (div, p, td, tr, table, h1–h6, li, br, …), whitespace
//     collapsed, leaving out <head>, <style>, <script> and display:none parts;
//   * the number of sections and of columns. Sections: the element children
//     of the body wrapper `div[aria-roledescription="email"]`, which both
//     renderers emit once per email; each mj-section (or mj-wrapper, or
//     full-width section) is exactly one element there, a `div` or `table`
//     (the Outlook-only tables around them are in conditional comments, which
//     are not parsed). Columns: elements with the class `mj-outlook-group-fix`,
//     which both put on every mj-column / mj-group `div`.
//
// Prints `ok STEM.mjml (…)` per matching pair; otherwise, per difference, what
// only the official mjml output has (`- mjml:`) and what only gazette's mrml
// output has (`+ mrml:`). Exit codes: 0 all match, 1 differences or problems,
// 2 wrong usage or the peer (npm package `mjml`) is missing: never passes
// because a tool is missing.

import { readdirSync, readFileSync, existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const usage = "usage: node scripts/compare_mjml.mjs DIR";
const args = process.argv.slice(2);
if (args.length !== 1 || args[0].startsWith("-")) {
  console.error(usage);
  process.exit(2);
}
const dir = resolve(args[0]);
if (!existsSync(dir) || !statSync(dir).isDirectory()) {
  console.error(`compare_mjml.mjs: ${args[0]} is not a folder`);
  process.exit(2);
}

let mjml2html, parse;
try {
  ({ default: mjml2html } = await import("mjml"));
  ({ parse } = await import("node-html-parser"));
} catch (err) {
  console.error(
    `compare_mjml.mjs: cannot load the official MJML renderer (${err.message.split("\n")[0]}); ` +
      "install it with `npm ci --prefix scripts`",
  );
  process.exit(2);
}

const BLOCK = new Set(
  ("address article aside blockquote body br caption center dd div dl dt fieldset figcaption " +
    "figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody " +
    "td tfoot th thead tr ul").split(" "),
);
const SKIP = new Set(["head", "style", "script", "title", "template", "noscript"]);
const norm = (s) => s.replace(/\s+/g, " ").trim();
const tag = (node) => (node.rawTagName || "").toLowerCase();
const hidden = (node) =>
  /(^|;)\s*display\s*:\s*none/i.test(node.getAttribute("style") || "") || node.hasAttribute("hidden");

// What a reader sees and clicks in one HTML email.
function facts(html) {
  const root = parse(html, { comment: false });
  const body = root.querySelector("body") || root;
  const out = {
    title: [norm(root.querySelector("title")?.text || "")],
    hidden: [],
    links: [],
    linkTexts: [],
    linkPairs: [],
    images: [],
    text: [],
    sections: null,
    columns: body.querySelectorAll(".mj-outlook-group-fix").length,
  };
  const wrapper = body.querySelector('div[aria-roledescription="email"]');
  if (wrapper) out.sections = wrapper.childNodes.filter((n) => n.nodeType === 1).length;

  let current = "";
  const flush = () => {
    const text = norm(current);
    if (text) out.text.push(text);
    current = "";
  };
  const walk = (node) => {
    if (node.nodeType === 3) {
      current += node.text;
      return;
    }
    if (node.nodeType !== 1) return;
    const name = tag(node);
    if (SKIP.has(name)) return;
    if (hidden(node)) {
      const text = norm(node.text);
      if (text) out.hidden.push(text);
      return;
    }
    if (name === "a" && node.hasAttribute("href")) {
      const href = node.getAttribute("href");
      const text = norm(node.text);
      out.links.push(href);
      out.linkTexts.push(text);
      out.linkPairs.push(`${JSON.stringify(text)} → ${href}`);
    }
    if (name === "img") {
      const alt = node.getAttribute("alt");
      out.images.push(`${node.getAttribute("src") ?? "(no src)"}${alt ? ` (alt ${JSON.stringify(alt)})` : ""}`);
    }
    const block = BLOCK.has(name);
    if (block) flush();
    for (const child of node.childNodes) walk(child);
    if (block) flush();
  };
  walk(body);
  flush();
  return out;
}

// Multiset difference: [only in a, only in b].
function multisetDiff(a, b) {
  const count = new Map();
  for (const x of a) count.set(x, (count.get(x) || 0) + 1);
  for (const x of b) count.set(x, (count.get(x) || 0) - 1);
  const onlyA = [], onlyB = [];
  for (const [x, n] of count) {
    for (let i = 0; i < n; i++) onlyA.push(x);
    for (let i = 0; i < -n; i++) onlyB.push(x);
  }
  return [onlyA, onlyB];
}

// Ordered difference (LCS) of two short lists, as `-`/`+` lines with positions.
function sequenceDiff(a, b) {
  const m = a.length, n = b.length;
  const lcs = Array.from({ length: m + 1 }, () => new Int32Array(n + 1));
  for (let i = m - 1; i >= 0; i--)
    for (let j = n - 1; j >= 0; j--)
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const lines = [];
  let i = 0, j = 0;
  while (i < m || j < n) {
    if (i < m && j < n && a[i] === b[j]) { i++; j++; }
    else if (i < m && (j === n || lcs[i + 1][j] >= lcs[i][j + 1])) lines.push(`- mjml #${++i}: ${a[i - 1]}`);
    else lines.push(`+ mrml #${++j}: ${b[j - 1]}`);
  }
  return lines;
}

const clip = (s) => (s.length > 600 ? `${s.slice(0, 599)}…` : s);

function compare(ref, ours) {
  const problems = [];
  const multi = (what, a, b) => {
    const [onlyRef, onlyOurs] = multisetDiff(a, b);
    if (onlyRef.length || onlyOurs.length)
      problems.push([
        `${what} differ (mjml ${a.length}, mrml ${b.length})`,
        ...onlyRef.map((x) => `- mjml: ${clip(x)}`),
        ...onlyOurs.map((x) => `+ mrml: ${clip(x)}`),
      ]);
    return !(onlyRef.length || onlyOurs.length);
  };
  const seq = (what, a, b) => {
    const lines = sequenceDiff(a, b);
    if (lines.length) problems.push([`${what} differ (mjml ${a.length}, mrml ${b.length})`, ...lines.map(clip)]);
  };
  seq("titles", ref.title, ours.title);
  seq("hidden (preheader) texts", ref.hidden, ours.hidden);
  const hrefsSame = multi("link targets (a[href])", ref.links, ours.links);
  const textsSame = multi("link/button texts", ref.linkTexts, ours.linkTexts);
  if (hrefsSame && textsSame) multi("link text → target pairs", ref.linkPairs, ours.linkPairs);
  multi("image sources (img[src])", ref.images, ours.images);
  seq("visible text blocks", ref.text, ours.text);
  if (ref.sections === null || ours.sections === null) {
    problems.push([
      'no body wrapper div[aria-roledescription="email"] to count sections in: ' +
        `${ref.sections === null ? "mjml" : ""}${ref.sections === null && ours.sections === null ? " and " : ""}` +
        `${ours.sections === null ? "mrml" : ""}`,
    ]);
  } else if (ref.sections !== ours.sections) {
    problems.push([`sections differ: mjml ${ref.sections}, mrml ${ours.sections}`]);
  }
  if (ref.columns !== ours.columns) problems.push([`columns differ: mjml ${ref.columns}, mrml ${ours.columns}`]);
  return problems;
}

const stems = readdirSync(dir)
  .filter((f) => f.endsWith(".mjml"))
  .map((f) => f.slice(0, -".mjml".length))
  .sort();
if (stems.length === 0) {
  console.log(`${dir}: no .mjml files found`);
  process.exit(1);
}

let failed = 0;
const started = process.hrtime.bigint();
for (const stem of stems) {
  const mjmlPath = join(dir, `${stem}.mjml`);
  const htmlPath = join(dir, `${stem}.html`);
  const problems = [];
  if (!existsSync(htmlPath)) {
    problems.push([`${stem}.html (gazette's mrml output) is missing`]);
  } else {
    let result;
    try {
      result = await mjml2html(readFileSync(mjmlPath, "utf8"), { validationLevel: "soft", filePath: mjmlPath });
    } catch (err) {
      problems.push([`the official mjml renderer failed: ${err.message}`]);
    }
    if (result) {
      for (const e of result.errors || [])
        problems.push([`mjml validation: line ${e.line}: ${e.message}${e.tagName ? ` (${e.tagName})` : ""}`]);
      const ref = facts(result.html);
      const ours = facts(readFileSync(htmlPath, "utf8"));
      problems.push(...compare(ref, ours));
      if (problems.length === 0)
        console.log(
          `ok ${stem}.mjml (${ours.sections} sections, ${ours.columns} columns, ${ours.links.length} links, ` +
            `${ours.images.length} images, ${ours.text.length} text blocks)`,
        );
    }
  }
  if (problems.length) {
    failed++;
    for (const [head, ...lines] of problems) {
      console.log(`${stem}: ${head}`);
      for (const line of lines) console.log(`    ${line}`);
    }
  }
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
if (failed) {
  console.log(`FAILED: ${failed} of ${stems.length} file(s) differ from the official mjml rendering`);
  process.exit(1);
}
console.log(`all ${stems.length} file(s) match the official mjml rendering (${seconds.toFixed(1)} s)`);
