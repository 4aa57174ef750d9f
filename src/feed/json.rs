//! Feed stage: JSON Feed 1.1 (`feed.json`).
//!
//! Imports: `config`, `content`.

use anyhow::Result;
use serde_json::{Map, Value, json};

use super::{FeedSet, author_names, generator};
use crate::config::{Config, FeedContent};
use crate::content::Post;

pub const FILE: &str = "feed.json";

pub fn render(config: &Config, set: &FeedSet) -> Result<Vec<u8>> {
    let (name, version) = generator();
    let mut feed = Map::new();
    feed.insert("version".into(), json!("https://jsonfeed.org/version/1.1"));
    feed.insert("title".into(), json!(set.title));
    feed.insert("home_page_url".into(), json!(set.url(config, "")));
    feed.insert("feed_url".into(), json!(set.url(config, FILE)));
    if !config.site.description.is_empty() {
        feed.insert("description".into(), json!(config.site.description));
    }
    feed.insert("language".into(), json!(config.site.language));
    if let Some(author) = &config.site.author {
        feed.insert("authors".into(), json!([{ "name": author.name }]));
    }
    feed.insert(
        "_generator".into(),
        json!({ "name": name, "version": version }),
    );
    let items = set.posts.iter().map(|post| item(config, post)).collect();
    feed.insert("items".into(), Value::Array(items));
    let mut bytes = serde_json::to_vec_pretty(&feed)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn item(config: &Config, post: &Post) -> Value {
    let mut item = Map::new();
    item.insert("id".into(), json!(post.url.to_string()));
    item.insert("url".into(), json!(post.url.to_string()));
    item.insert("title".into(), json!(post.title));
    match config.feeds.content {
        FeedContent::Full => item.insert("content_html".into(), json!(post.body_html)),
        FeedContent::Summary => item.insert("content_text".into(), json!(post.summary)),
    };
    item.insert("summary".into(), json!(post.summary));
    if let Some(image) = &post.image {
        item.insert("image".into(), json!(image.to_string()));
    }
    item.insert("date_published".into(), json!(post.date.to_rfc3339()));
    if let Some(updated) = post.updated {
        item.insert("date_modified".into(), json!(updated.to_rfc3339()));
    }
    let authors: Vec<Value> = author_names(post)
        .into_iter()
        .map(|name| json!({ "name": name }))
        .collect();
    if !authors.is_empty() {
        item.insert("authors".into(), Value::Array(authors));
    }
    if !post.tags.is_empty() {
        let tags: Vec<&str> = post.tags.iter().map(|t| t.name.as_str()).collect();
        item.insert("tags".into(), json!(tags));
    }
    Value::Object(item)
}
