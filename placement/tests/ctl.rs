//! `placement-ctl`'s library against an in-process placement server.

mod common;

use common::*;
use placement::ctl::{run, Command, ConfigCommand, SchedulerCommand, StoreCommand};

#[tokio::test]
async fn ctl_commands_against_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let pd = server.url();
    let mut client = TestPd::connect(&server).await;
    let (first, region_id, _) = client.must_bootstrap_cluster().await;
    let extra = first + 10;
    client.must_put_store(store(extra)).await;

    let out = run(&pd, &Command::Stores).await.unwrap();
    assert!(out.starts_with("ID  ADDRESS"), "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{}", 20160 + extra)),
        "{out}"
    );
    let out = run(&pd, &Command::Regions).await.unwrap();
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with(&region_id.to_string()),
        "{out}"
    );

    // Drain the store holding the region: a drained store with no region becomes a tombstone at
    // the next tick, which could come before the `up` below on a loaded machine.
    let drain = Command::Store(StoreCommand::Drain {
        id: first,
        force: false,
    });
    let err = run(&pd, &drain).await.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("force=true"), "{err}");
    let drain = Command::Store(StoreCommand::Drain {
        id: first,
        force: true,
    });
    assert!(run(&pd, &drain).await.unwrap().contains("Offline"));
    let up = Command::Store(StoreCommand::Up { id: first });
    run(&pd, &up).await.unwrap();
    let out = run(&pd, &Command::Stores).await.unwrap();
    assert!(
        !out.contains("Offline") && !out.contains("Tombstone"),
        "{out}"
    );

    let add = Command::Scheduler(SchedulerCommand::Add {
        kind: "evict-leader".into(),
        store: Some(first),
    });
    run(&pd, &add).await.unwrap();
    let out = run(&pd, &Command::Schedulers).await.unwrap();
    assert!(
        out.contains(&format!("evict-leader-scheduler-{first}")),
        "{out}"
    );
    let remove = Command::Scheduler(SchedulerCommand::Remove {
        kind: "evict-leader".into(),
        store: Some(first),
    });
    run(&pd, &remove).await.unwrap();
    assert!(!run(&pd, &Command::Schedulers)
        .await
        .unwrap()
        .contains("evict"));

    let set = |key: &str, value: &str| {
        Command::Config(ConfigCommand::Set {
            key: key.into(),
            value: value.into(),
        })
    };
    run(&pd, &set("max-replicas", "1")).await.unwrap();
    run(&pd, &set("location-labels", "zone,host"))
        .await
        .unwrap();
    assert!(run(&pd, &set("max-store-down-time", "x")).await.is_err());
    let out = run(&pd, &Command::Config(ConfigCommand::Show))
        .await
        .unwrap();
    let pairs: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        pairs.contains(&vec!["replication.location-labels", "zone,host"]),
        "{out}"
    );
    assert!(
        pairs.contains(&vec!["replication.max-replicas", "1"]),
        "{out}"
    );
    let out = run(&pd, &Command::FaultTolerance).await.unwrap();
    let levels: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(levels, ["zone", "host", "store"], "{out}");
    server.stop().await.unwrap();
}
