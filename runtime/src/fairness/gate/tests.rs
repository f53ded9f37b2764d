//! The scheduler alone (no database): shares, queues, turns, weights, abandoned waiters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::poll;
use uuid::Uuid;

use super::*;

fn gate(capacity: usize, share: f64, queue: usize, weights: TenantWeights) -> Arc<Gate> {
    let config = FairShare {
        share: Some(share),
        queue: Some(queue),
        weights,
    };
    Arc::new(Gate::new(
        capacity,
        &config,
        Duration::from_secs(30),
        Arc::new(Load::new(20)),
    ))
}

fn tenants() -> (Uuid, Uuid) {
    (Uuid::new_v4(), Uuid::new_v4())
}

#[tokio::test]
async fn a_tenant_holds_at_most_its_share_while_another_goes_straight_in() {
    let g = gate(4, 0.5, 8, TenantWeights::default());
    let (a, b) = tenants();
    let a1 = g.admit(a).await.unwrap();
    let _a2 = g.admit(a).await.unwrap();
    let mut a3 = Box::pin(g.admit(a));
    assert!(
        poll!(&mut a3).is_pending(),
        "A's third waits: its share is 2 of 4"
    );
    let _b1 = g
        .admit(b)
        .await
        .expect("B under its share goes straight in");
    let _b2 = g.admit(b).await.unwrap();
    assert_eq!(g.in_use(), (4, 4));
    drop(a1);
    let _a3 = a3.await.expect("A's waiter gets A's returned place");
    assert_eq!(g.held()[&a].held, 2);
}

#[tokio::test]
async fn past_its_queue_a_tenant_is_refused_with_tenant_busy_and_counted() {
    let g = gate(4, 0.5, 1, TenantWeights::default());
    let (a, b) = tenants();
    let _held = (g.admit(a).await.unwrap(), g.admit(a).await.unwrap());
    let mut waiting = Box::pin(g.admit(a));
    assert!(poll!(&mut waiting).is_pending());
    match g.admit(a).await {
        Err(DbError::TenantBusy(message)) => {
            assert!(message.contains("2 of its 2"), "{message}")
        }
        Err(other) => panic!("expected TenantBusy, got {other}"),
        Ok(_) => panic!("expected TenantBusy, got a permit"),
    }
    assert!(g.admit(b).await.is_ok(), "another tenant is not refused");
    let shed: u64 = g
        .load()
        .labelled()
        .iter()
        .filter(|l| l.tenants.contains(&a))
        .map(|l| l.counters.shed_pool)
        .sum();
    assert_eq!(shed, 1);
}

#[tokio::test]
async fn a_returned_place_goes_to_the_waiting_tenant_that_holds_least() {
    // Share 1: each may take the whole pool, so the pool itself is what is contended.
    let g = gate(4, 1.0, 8, TenantWeights::default());
    let (a, b) = tenants();
    let mut a_held = vec![];
    for _ in 0..3 {
        a_held.push(g.admit(a).await.unwrap());
    }
    let _b1 = g.admit(b).await.unwrap();
    let mut a_waits = Box::pin(g.admit(a));
    assert!(poll!(&mut a_waits).is_pending(), "A queued first");
    let mut b_waits = Box::pin(g.admit(b));
    assert!(poll!(&mut b_waits).is_pending(), "B queued second");
    a_held.pop();
    let b2 = poll!(&mut b_waits);
    assert!(
        b2.is_ready(),
        "B (holding 1) goes before A (holding 2), though A waited longer"
    );
    assert!(poll!(&mut a_waits).is_pending());
    a_held.pop();
    assert!(poll!(&mut a_waits).is_ready());
    drop(b2);
}

#[tokio::test]
async fn a_heavier_tenant_holds_more_and_still_yields_turns_by_weight() {
    let (a, b) = tenants();
    let weights = TenantWeights::table(HashMap::from([(a, 2.0)]));
    let g = gate(8, 0.25, 8, weights);
    let mut held = vec![];
    for _ in 0..4 {
        held.push(g.admit(a).await.expect("weight 2: a share of 4 of 8"));
    }
    let mut fifth = Box::pin(g.admit(a));
    assert!(poll!(&mut fifth).is_pending());
    assert_eq!(g.held()[&a].cap, 4);
    let _b = (g.admit(b).await.unwrap(), g.admit(b).await.unwrap());
    assert_eq!(g.held()[&b].cap, 2);
}

#[tokio::test]
async fn an_abandoned_waiter_leaves_the_queue_and_a_granted_one_returns_its_place() {
    let g = gate(2, 0.5, 8, TenantWeights::default());
    let (a, b) = tenants();
    let a1 = g.admit(a).await.unwrap();
    let mut gone = Box::pin(g.admit(a));
    assert!(poll!(&mut gone).is_pending());
    assert_eq!(g.held()[&a].waiting, 1);
    drop(gone);
    assert_eq!(
        g.held()[&a].waiting,
        0,
        "a dropped request leaves the queue"
    );
    // Granted, then abandoned before it is polled again: the place comes back.
    let mut granted_then_gone = Box::pin(g.admit(a));
    assert!(poll!(&mut granted_then_gone).is_pending());
    drop(a1);
    drop(granted_then_gone);
    assert_eq!(g.in_use(), (0, 2));
    let _b = (g.admit(b).await.unwrap(), g.admit(a).await.unwrap());
    assert_eq!(g.in_use(), (2, 2));
}

#[tokio::test]
async fn a_wait_that_runs_out_is_429_at_the_tenants_share_and_503_below_it() {
    let config = FairShare {
        share: Some(0.5),
        queue: Some(8),
        weights: TenantWeights::default(),
    };
    let g = Arc::new(Gate::new(
        2,
        &config,
        Duration::from_millis(20),
        Arc::new(Load::new(20)),
    ));
    let (a, b) = tenants();
    let _a1 = g.admit(a).await.unwrap();
    assert!(matches!(g.admit(a).await, Err(DbError::TenantBusy(_))));
    let _b1 = g.admit(b).await.unwrap();
    // The pool is full; C holds nothing: the service is saturated, not C.
    let c = Uuid::new_v4();
    assert!(matches!(g.admit(c).await, Err(DbError::Pool(_))));
}

#[tokio::test]
async fn fair_sharing_off_admits_everyone_and_still_counts() {
    let g = Arc::new(Gate::new(
        1,
        &FairShare::off(),
        Duration::from_secs(1),
        Arc::new(Load::new(20)),
    ));
    let a = Uuid::new_v4();
    let held: Vec<_> = futures_util::future::join_all((0..5).map(|_| g.admit(a)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(held.len(), 5);
    assert_eq!(g.in_use(), (0, 1), "nothing is scheduled");
}
