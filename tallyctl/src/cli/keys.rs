//! `tallyctl keys`: the keys of a channel's world state, in key order.

use super::Ctx;
use anyhow::Result;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[arg(long, short)]
    channel: String,
    #[arg(long, default_value = "")]
    prefix: String,
    /// At most this many keys (the node's default is 100).
    #[arg(long)]
    limit: Option<u32>,
}

impl KeysArgs {
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

pub async fn run(ctx: &Ctx, a: KeysArgs) -> Result<()> {
    let (_, keys) = ctx
        .on_any(|c| {
            let a = &a;
            async move { c.keys(&a.channel, &a.prefix, a.limit).await }
        })
        .await?;
    ctx.show(&json!({ "keys": keys }), || {
        for k in &keys {
            println!("{}\t{}.{}", k.key, k.version.block, k.version.tx);
        }
    })
}
