//! Feed stage: RSS 2.0 (`rss.xml`) with the content, Dublin Core, Atom and
//! Media RSS extensions.
//!
//! Imports: `config`, `content`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rss::extension::Extension;
use rss::extension::atom::{AtomExtension, Link};
use rss::extension::dublincore::DublinCoreExtension;
use rss::{Category, Channel, Guid, Item};

use super::{FeedSet, author_names, generator};
use crate::config::{Config, FeedContent};
use crate::content::Post;

pub const FILE: &str = "rss.xml";
const MEDIA_NS: &str = "http://search.yahoo.com/mrss/";

pub fn render(config: &Config, set: &FeedSet) -> Result<Vec<u8>> {
    let (name, version) = generator();
    let channel = Channel {
        title: set.title.clone(),
        link: set.url(config, ""),
        description: if config.site.description.is_empty() {
            config.site.title.clone()
        } else {
            config.site.description.clone()
        },
        language: Some(config.site.language.clone()),
        generator: Some(format!("{name} {version}")),
        last_build_date: set.newest().map(|d| d.to_rfc2822()),
        namespaces: BTreeMap::from([("media".to_string(), MEDIA_NS.to_string())]),
        atom_ext: Some(AtomExtension {
            links: vec![Link {
                href: set.url(config, FILE),
                rel: "self".into(),
                mime_type: Some("application/rss+xml".into()),
                ..Link::default()
            }],
        }),
        items: set.posts.iter().map(|post| item(config, post)).collect(),
        ..Channel::default()
    };
    let bytes = channel
        .pretty_write_to(Vec::new(), b' ', 2)
        .context("cannot write the RSS feed")?;
    Ok(with_newline(bytes))
}

fn item(config: &Config, post: &Post) -> Item {
    let email_author = post.authors.iter().find_map(|a| {
        a.email
            .as_ref()
            .map(|email| format!("{email} ({})", a.name))
    });
    let mut extensions = BTreeMap::new();
    if let Some(image) = &post.image {
        let content = Extension {
            name: "media:content".into(),
            attrs: BTreeMap::from([
                ("url".to_string(), image.to_string()),
                ("medium".to_string(), "image".to_string()),
            ]),
            ..Extension::default()
        };
        extensions.insert(
            "media".to_string(),
            BTreeMap::from([("content".to_string(), vec![content])]),
        );
    }
    Item {
        title: Some(post.title.clone()),
        link: Some(post.url.to_string()),
        // Readers show <description> as HTML; the summary is plain text.
        description: Some(escape_html(&post.summary)),
        author: email_author,
        categories: post
            .tags
            .iter()
            .map(|t| Category {
                name: t.name.clone(),
                domain: None,
            })
            .collect(),
        guid: Some(Guid {
            value: post.url.to_string(),
            permalink: true,
        }),
        pub_date: Some(post.date.to_rfc2822()),
        content: (config.feeds.content == FeedContent::Full).then(|| post.body_html.clone()),
        dublin_core_ext: (!post.authors.is_empty()).then(|| DublinCoreExtension {
            creators: author_names(post),
            ..DublinCoreExtension::default()
        }),
        extensions,
        ..Item::default()
    }
}

/// `text` as HTML that shows it literally.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn with_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes
}
