//! The online store in Redis, shared by replicas. A row is one string key
//! `loopline:features:<project>:<view>:<entity key bytes>` holding a 41-byte ordering prefix and the encoded
//! row; a Lua script replaces it only with a row that is not older, atomically. A request's lookups for all
//! its views are one `MGET`.

use std::time::Duration;

use async_trait::async_trait;
use loopline_core::redact::{scrubbed, url_secrets};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client};

use super::{Keyed, OnlineError, OnlineRow, OnlineStore};

const PREFIX: &str = "loopline:features:";
/// Length of `OnlineRow::order_text`.
const ORDER_BYTES: usize = 41;
/// Rows per pipeline.
const ROWS_PER_PIPELINE: usize = 5_000;

/// Keeps the newer row: the stored row's ordering prefix is compared with the new one as text.
const KEEP_NEWER: &str = r"
local current = redis.call('GETRANGE', KEYS[1], 0, 40)
if current == '' or ARGV[1] >= current then
  redis.call('SET', KEYS[1], ARGV[2])
end
return 0
";

/// The Redis store.
pub struct RedisOnlineStore {
    connection: ConnectionManager,
    place: String,
    /// The URL's user part and password, kept out of every message.
    secrets: Vec<String>,
}

impl RedisOnlineStore {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`) and checks that Redis answers.
    pub async fn connect(url: &str) -> Result<RedisOnlineStore, OnlineError> {
        let client =
            Client::open(url).map_err(|e| OnlineError(format!("the Redis URL is not valid: {}", e.kind_text())))?;
        let place = client.get_connection_info().addr.to_string();
        // A Redis that is down fails a request within seconds, not after minutes of retries.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(10))
            .set_number_of_retries(1)
            .set_max_delay(500);
        let refused = |what: String| OnlineError(format!("cannot reach Redis at {place}: {what}"));
        let mut connection = tokio::time::timeout(
            Duration::from_secs(10),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| refused("no answer within 10 s".into()))?
        .map_err(|e| refused(e.kind_text()))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| refused(e.kind_text()))?;
        Ok(RedisOnlineStore {
            connection,
            place,
            secrets: url_secrets(url),
        })
    }

    fn failed(&self, error: redis::RedisError) -> OnlineError {
        let text = scrubbed(error.to_string(), &self.secrets);
        let advice = if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
            "; is Redis running and reachable? The server retries on the next request"
        } else {
            ""
        };
        OnlineError(format!("Redis at {}: {text}{advice}", self.place))
    }
}

fn row_key(project: &str, view: &str, entity: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(PREFIX.len() + project.len() + view.len() + entity.len() + 2);
    key.extend_from_slice(PREFIX.as_bytes());
    key.extend_from_slice(project.as_bytes());
    key.push(b':');
    key.extend_from_slice(view.as_bytes());
    key.push(b':');
    key.extend_from_slice(entity);
    key
}

fn watermark_key(project: &str) -> String {
    format!("{PREFIX}{project}::watermarks")
}

trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    /// The error without the URL (which may hold a password).
    fn kind_text(&self) -> String {
        match self.detail() {
            Some(detail) => format!("{:?}: {detail}", self.kind()),
            None => format!("{:?}", self.kind()),
        }
    }
}

#[async_trait]
impl OnlineStore for RedisOnlineStore {
    async fn write(&self, project: &str, view: &str, rows: Keyed) -> Result<(), OnlineError> {
        let mut connection = self.connection.clone();
        for chunk in rows.chunks(ROWS_PER_PIPELINE) {
            let mut pipe = redis::pipe();
            for (key, row) in chunk {
                let order = row.order_text();
                let mut value = Vec::with_capacity(ORDER_BYTES + 64);
                value.extend_from_slice(order.as_bytes());
                value.extend_from_slice(&row.encode());
                pipe.cmd("EVAL")
                    .arg(KEEP_NEWER)
                    .arg(1)
                    .arg(row_key(project, view, key))
                    .arg(order)
                    .arg(value)
                    .ignore();
            }
            let () = pipe.query_async(&mut connection).await.map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    async fn read(
        &self,
        project: &str,
        wanted: &[(String, Vec<Vec<u8>>)],
    ) -> Result<Vec<Vec<Option<OnlineRow>>>, OnlineError> {
        let keys: Vec<Vec<u8>> = wanted
            .iter()
            .flat_map(|(view, entities)| entities.iter().map(move |e| row_key(project, view, e)))
            .collect();
        if keys.is_empty() {
            return Ok(wanted.iter().map(|_| Vec::new()).collect());
        }
        let mut connection = self.connection.clone();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        let mut values = values.into_iter();
        Ok(wanted
            .iter()
            .map(|(_, entities)| {
                entities
                    .iter()
                    .map(|_| {
                        values
                            .next()
                            .flatten()
                            .and_then(|bytes| bytes.get(ORDER_BYTES..).and_then(OnlineRow::decode))
                    })
                    .collect()
            })
            .collect())
    }

    async fn watermark(&self, project: &str, view: &str) -> Result<Option<i64>, OnlineError> {
        let mut connection = self.connection.clone();
        connection
            .hget(watermark_key(project), view)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn set_watermark(&self, project: &str, view: &str, end: i64) -> Result<(), OnlineError> {
        let mut connection = self.connection.clone();
        connection
            .hset(watermark_key(project), view, end)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn drop_view(&self, project: &str, view: &str) -> Result<(), OnlineError> {
        let mut connection = self.connection.clone();
        // Names are letters, digits, `_` and `-`, so the pattern matches this view's keys and no other's.
        let pattern = format!("{PREFIX}{project}:{view}:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.failed(e))?;
            if !keys.is_empty() {
                let () = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let () = connection
            .hdel(watermark_key(project), view)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("Redis online store at {}", self.place)
    }
}
