//! One snapshot per statement: what the router decided and what the
//! consistency plan checks come from the same snapshot, even when the
//! monitor publishes a new topology between the two steps.

use std::sync::Arc;

use super::{Snapshot, SnapshotBuffers};
use crate::classify::classify;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::router::{self, Reason, SessionView, Target};

fn cluster() -> Arc<Cluster> {
    let text = "[cluster]\nprimary = { name = \"p\", address = \"127.0.0.1:1\" }\n\
                [[cluster.replicas]]\nname = \"r1\"\naddress = \"127.0.0.1:2\"\n\
                [monitor]\nuser = \"m\"\n";
    let config = Arc::new(Config::from_str(text, "t.toml").unwrap());
    let cluster = Cluster::new(config);
    cluster.update_topology(|t| {
        for b in &mut t.backends {
            b.up = true;
            b.lag_s = Some(0);
            b.replicating = Some(true);
        }
    });
    cluster
}

#[test]
fn decide_and_plan_read_use_the_statement_snapshot() {
    let cluster = cluster();
    let before = cluster.topology();
    let snap = Snapshot::take(&cluster, "app", None, SnapshotBuffers::default());
    // The monitor sees the replica go down between routing and planning.
    cluster.update_topology(|t| t.backends[1].up = false);
    assert!(!Arc::ptr_eq(&cluster.topology(), &snap.topo));
    assert!(Arc::ptr_eq(&before, &snap.topo));
    assert!(Arc::ptr_eq(cluster.config(), &snap.config));

    let class = classify("SELECT c FROM t WHERE id = 1");
    let decision = snap.route(
        &class,
        &SessionView::default(),
        "SELECT c FROM t WHERE id = 1",
    );
    assert_eq!(decision.target, Target::Backend(1));
    assert_eq!(decision.reason, Reason::Read);
    // What plan_read checks (the replica may take reads) agrees with the
    // decision, because it reads the same snapshot ...
    assert!(router::may_read(
        &snap.policy,
        &snap.topo,
        snap.loads(),
        1,
        false
    ));
    // ... while a snapshot taken now would not.
    let now = Snapshot::take(&cluster, "app", None, snap.into_buffers());
    assert!(!router::may_read(
        &now.policy,
        &now.topo,
        now.loads(),
        1,
        false
    ));
    let again = now.route(
        &class,
        &SessionView::default(),
        "SELECT c FROM t WHERE id = 1",
    );
    assert_eq!(again.target, Target::Primary);
}

#[test]
fn snapshot_buffers_are_reused_between_statements() {
    let cluster = cluster();
    let snap = Snapshot::take(&cluster, "app", None, SnapshotBuffers::default());
    assert_eq!(snap.outstanding.len(), 2);
    assert_eq!(snap.lags.len(), 2);
    let (loads_ptr, lags_ptr) = (snap.outstanding.as_ptr(), snap.lags.as_ptr());
    let next = Snapshot::take(&cluster, "app", None, snap.into_buffers());
    // The same memory, refilled: taking a snapshot allocates nothing.
    assert_eq!(next.outstanding.as_ptr(), loads_ptr);
    assert_eq!(next.lags.as_ptr(), lags_ptr);
    assert_eq!(next.outstanding.len(), 2);
}
