//! `/pd/api/v1/config`, `/config/replicate` and `/config/schedule`: show the settings in
//! force and change some of them at runtime, as pd-ctl's `config show` and `config set` do.
//!
//! `POST` takes a JSON object of PD's keys: `max-replicas` (a number; the cluster's
//! `max_peer_count`), `location-labels` (`"zone,host"` or `["zone", "host"]`),
//! `isolation-level` (`"zone"`, or `""` to turn it off) and `max-store-down-time` (`"30m"`).
//! All but the first are persisted as a [`ConfigRecord`] over the config file's values; the
//! resulting `isolation-level` must be empty or one of the resulting `location-labels`.
//! [`plan_change`] is the pure part.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use super::{views, ApiResult};
use crate::config::{check_isolation_level, ReadableDuration};
use crate::error::{Error, Result};
use crate::meta::{ConfigRecord, MetaWrite};
use crate::schedule::Settings;
use crate::state::Placement;

type AppState = State<Arc<Placement>>;

/// What a config change asks for: the new overrides and, if set, a new `max-replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub overrides: ConfigRecord,
    pub max_replicas: Option<u32>,
}

fn bad(key: &str, why: &str) -> Error {
    Error::invalid(format!("config `{key}`: {why}"))
}

fn labels(key: &str, v: &Value) -> Result<Vec<String>> {
    let list: Vec<String> = match v {
        Value::String(s) => s
            .split(',')
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(key, "expected strings"))?,
        _ => return Err(bad(key, "expected \"zone,host\" or a list")),
    };
    for (i, l) in list.iter().enumerate() {
        if l.is_empty() || list[..i].contains(l) {
            return Err(bad(key, &format!("label `{l}` is empty or repeated")));
        }
    }
    Ok(list)
}

/// Applies a `POST` body to the current overrides over `base`, the config file's settings.
pub fn plan_change(
    current: &ConfigRecord,
    base: &Settings,
    body: &Map<String, Value>,
) -> Result<Change> {
    let mut change = Change {
        overrides: current.clone(),
        max_replicas: None,
    };
    for (key, v) in body {
        match key.as_str() {
            "max-replicas" => {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
                    .ok_or_else(|| bad(key, "expected a positive number"))?;
                change.max_replicas = Some(n as u32);
            }
            "location-labels" => {
                change.overrides.location_labels = labels(key, v)?;
                change.overrides.has_location_labels = true;
            }
            "max-store-down-time" => {
                let d: ReadableDuration = v
                    .as_str()
                    .ok_or_else(|| bad(key, "expected a duration such as \"30m\""))?
                    .parse()
                    .map_err(|e: String| bad(key, &e))?;
                if d.0 < Duration::from_secs(1) {
                    return Err(bad(key, "must be at least 1s"));
                }
                change.overrides.max_store_down_time_ms = d.0.as_millis() as u64;
            }
            "isolation-level" => {
                let level = v
                    .as_str()
                    .ok_or_else(|| bad(key, "expected a location label such as \"zone\""))?;
                change.overrides.isolation_level = level.trim().to_owned();
                change.overrides.has_isolation_level = true;
            }
            other => return Err(bad(other, "unknown or read-only key")),
        }
    }
    let after = base.with_overrides(&change.overrides);
    check_isolation_level(&after.isolation_level, &after.location_labels)
        .map_err(|why| bad("isolation-level", &why))?;
    Ok(change)
}

fn replication(state: &Placement) -> Value {
    let view = state.view();
    let max = view
        .meta()
        .map(|m| u64::from(m.max_peer_count))
        .unwrap_or(state.config.max_replicas);
    let settings = state.settings(&view);
    json!({
        "max-replicas": max,
        "location-labels": settings.location_labels.join(","),
        "strictly-match-label": "false",
        "enable-placement-rules": "false",
        "isolation-level": settings.isolation_level,
    })
}

fn settings(state: &Placement) -> Settings {
    state.settings(&state.view())
}

/// `GET /pd/api/v1/config/replicate`.
pub async fn replicate(State(state): AppState) -> Json<Value> {
    Json(replication(&state))
}

/// `GET /pd/api/v1/config/schedule`.
pub async fn schedule(State(state): AppState) -> Json<Value> {
    Json(views::schedule_config(&settings(&state)))
}

/// `GET /pd/api/v1/config`: `{"replication": {...}, "schedule": {...}}`.
pub async fn show(State(state): AppState) -> Json<Value> {
    Json(json!({
        "replication": replication(&state),
        "schedule": views::schedule_config(&settings(&state)),
    }))
}

/// `POST /pd/api/v1/config[/replicate|/schedule]` with `{"key": value, ...}`.
pub async fn set(State(state): AppState, Json(body): Json<Map<String, Value>>) -> ApiResult {
    let change = state
        .commit(|view| {
            let change = plan_change(view.config_override(), &state.schedule, &body)?;
            let mut writes = Vec::new();
            if let Some(n) = change.max_replicas {
                let mut cluster = view.meta()?;
                cluster.max_peer_count = n;
                writes.extend(view.plan_put_cluster(&cluster)?);
            }
            if change.overrides != *view.config_override() {
                writes.push(MetaWrite::Config(change.overrides.clone()));
            }
            Ok((change, writes))
        })
        .await?;
    tracing::info!(?change, "config changed");
    Ok(Json(json!("The config is updated.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_table() {
        let base = ConfigRecord::default();
        let obj = |v: Value| v.as_object().unwrap().clone();
        let zone_host = ConfigRecord {
            location_labels: vec!["zone".into(), "host".into()],
            has_location_labels: true,
            ..Default::default()
        };
        let zone = |labels: Vec<String>| ConfigRecord {
            has_location_labels: !labels.is_empty(),
            location_labels: labels,
            isolation_level: "zone".into(),
            has_isolation_level: true,
            ..Default::default()
        };
        // (body, expected overrides and max-replicas, or error text)
        type Row = (
            Value,
            std::result::Result<(ConfigRecord, Option<u32>), &'static str>,
        );
        let rows: Vec<Row> = vec![
            (json!({"max-replicas": 5}), Ok((base.clone(), Some(5)))),
            (json!({"max-replicas": "3"}), Ok((base.clone(), Some(3)))),
            (json!({"max-replicas": 0}), Err("positive")),
            (
                json!({"location-labels": "zone, host"}),
                Ok((zone_host.clone(), None)),
            ),
            (
                json!({"location-labels": ["zone", "host"]}),
                Ok((zone_host, None)),
            ),
            (json!({"location-labels": "zone,zone"}), Err("repeated")),
            (
                json!({"location-labels": ""}),
                Ok((
                    ConfigRecord {
                        has_location_labels: true,
                        ..Default::default()
                    },
                    None,
                )),
            ),
            (
                json!({"max-store-down-time": "1m30s"}),
                Ok((
                    ConfigRecord {
                        max_store_down_time_ms: 90_000,
                        ..Default::default()
                    },
                    None,
                )),
            ),
            (json!({"max-store-down-time": "10ms"}), Err("at least 1s")),
            (
                json!({"max-store-down-time": "soon"}),
                Err("max-store-down-time"),
            ),
            (json!({"cluster-version": "9"}), Err("unknown")),
            // The file's labels are zone and host.
            (json!({"isolation-level": "zone"}), Ok((zone(vec![]), None))),
            (
                json!({"isolation-level": ""}),
                Ok((
                    ConfigRecord {
                        has_isolation_level: true,
                        ..Default::default()
                    },
                    None,
                )),
            ),
            (
                json!({"isolation-level": "rack"}),
                Err("must be empty or one of location-labels [zone, host]"),
            ),
            (
                json!({"isolation-level": 3}),
                Err("expected a location label"),
            ),
            (
                json!({"location-labels": "region,zone", "isolation-level": "zone"}),
                Ok((zone(vec!["region".into(), "zone".into()]), None)),
            ),
            (
                json!({"location-labels": "region,host", "isolation-level": "zone"}),
                Err("isolation-level"),
            ),
        ];
        let file = Settings {
            location_labels: vec!["zone".into(), "host".into()],
            ..Settings::default()
        };
        for (body, want) in rows {
            let got = plan_change(&base, &file, &obj(body.clone()));
            match (got, want) {
                (Ok(c), Ok((o, m))) => assert_eq!((c.overrides, c.max_replicas), (o, m), "{body}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{body}: {e}"),
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
        // Labels changed later must keep the level set earlier.
        let set = zone(vec![]);
        let err = plan_change(&set, &file, &obj(json!({"location-labels": "host"}))).unwrap_err();
        assert!(err.to_string().contains("isolation-level"), "{err}");
        let ok = plan_change(&set, &file, &obj(json!({"location-labels": "zone"}))).unwrap();
        assert_eq!(ok.overrides.isolation_level, "zone");
    }
}
