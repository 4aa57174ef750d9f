//! Feed stage: Atom 1.0 (`atom.xml`); ids are the permalinks, so they stay
//! stable across builds and hosts.
//!
//! Imports: `config`, `content`, its sibling `rss`.

use anyhow::{Context, Result};
use atom_syndication::{
    Category, Content, Entry, Feed, Generator, Link, Person, Text, WriteConfig,
};
use chrono::DateTime;

use super::rss::with_newline;
use super::{FeedSet, generator};
use crate::config::{Author, Config, FeedContent};
use crate::content::Post;

pub const FILE: &str = "atom.xml";

pub fn render(config: &Config, set: &FeedSet) -> Result<Vec<u8>> {
    let (name, version) = generator();
    // Atom needs an author on the feed or on every entry: the site's, else its title.
    let site_author = config.site.author.as_ref().map_or_else(
        || Person {
            name: config.site.title.clone(),
            ..Person::default()
        },
        person,
    );
    let feed = Feed {
        title: Text::plain(set.title.clone()),
        id: set.url(config, ""),
        updated: set.newest().unwrap_or(DateTime::UNIX_EPOCH.fixed_offset()),
        authors: vec![site_author],
        links: vec![
            link(set.url(config, ""), "alternate", "text/html"),
            link(set.url(config, FILE), "self", "application/atom+xml"),
        ],
        subtitle: (!config.site.description.is_empty())
            .then(|| Text::plain(config.site.description.clone())),
        generator: Some(Generator {
            value: name.into(),
            uri: None,
            version: Some(version.into()),
        }),
        lang: Some(config.site.language.clone()),
        entries: set.posts.iter().map(|post| entry(config, post)).collect(),
        ..Feed::default()
    };
    let bytes = feed
        .write_with_config(
            Vec::new(),
            WriteConfig {
                write_document_declaration: true,
                indent_size: Some(2),
            },
        )
        .context("cannot write the Atom feed")?;
    Ok(with_newline(bytes))
}

fn entry(config: &Config, post: &Post) -> Entry {
    Entry {
        title: Text::plain(post.title.clone()),
        id: post.url.to_string(),
        updated: post.updated.unwrap_or(post.date).max(post.date),
        published: Some(post.date),
        authors: post.authors.iter().map(person).collect(),
        categories: post
            .tags
            .iter()
            .map(|t| Category {
                term: t.name.clone(),
                ..Category::default()
            })
            .collect(),
        links: vec![link(post.url.to_string(), "alternate", "text/html")],
        summary: Some(Text::plain(post.summary.clone())),
        content: (config.feeds.content == FeedContent::Full).then(|| Content {
            value: Some(post.body_html.clone()),
            content_type: Some("html".into()),
            ..Content::default()
        }),
        ..Entry::default()
    }
}

fn person(author: &Author) -> Person {
    Person {
        name: author.name.clone(),
        email: author.email.clone(),
        ..Person::default()
    }
}

fn link(href: String, rel: &str, mime: &str) -> Link {
    Link {
        href,
        rel: rel.into(),
        mime_type: Some(mime.into()),
        ..Link::default()
    }
}
