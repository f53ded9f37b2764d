use super::*;

fn record() -> AuditRecord {
    AuditRecord {
        id: 1,
        at: DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123456Z")
            .unwrap()
            .with_timezone(&Utc),
        actor_user_id: None,
        actor_email: "job:nightly".into(),
        action: "job".into(),
        reason: "send reminders".into(),
        tenant_id: Some(Uuid::nil()),
        request_id: None,
        location: Some("src/main.rs:1:1".into()),
    }
}

#[test]
fn the_encoding_matches_postgresql() {
    // SELECT encode(tenantry_audit_hash(decode(repeat('00', 32), 'hex'), 1,
    //     '2025-01-02T03:04:05.123456Z', NULL, 'job:nightly', 'job', 'send reminders',
    //     '00000000-0000-0000-0000-000000000000', NULL, 'src/main.rs:1:1'), 'hex');
    assert_eq!(hex(&record().hash(&GENESIS)), PINNED);
}

const PINNED: &str = "cdf97f6f2821e88539c1887255b88eef90fd1eb2abcddc3e5978e939cafc4e28";

#[test]
fn every_field_and_the_previous_hash_count() {
    let base = record();
    let h = base.hash(&GENESIS);
    assert_ne!(h, base.hash(&[1; 32]));
    let changed = [
        AuditRecord {
            id: 2,
            ..base.clone()
        },
        AuditRecord {
            at: base.at + chrono::Duration::microseconds(1),
            ..base.clone()
        },
        AuditRecord {
            actor_user_id: Some(Uuid::nil()),
            ..base.clone()
        },
        AuditRecord {
            actor_email: "job:nightlY".into(),
            ..base.clone()
        },
        AuditRecord {
            action: "jobs".into(),
            ..base.clone()
        },
        AuditRecord {
            reason: "send reminder".into(),
            ..base.clone()
        },
        AuditRecord {
            tenant_id: None,
            ..base.clone()
        },
        AuditRecord {
            request_id: Some(String::new()),
            ..base.clone()
        },
        AuditRecord {
            location: None,
            ..base.clone()
        },
    ];
    for other in changed {
        assert_ne!(h, other.hash(&GENESIS), "{other:?}");
    }
}

#[test]
fn moving_bytes_between_fields_changes_the_hash() {
    // Without the lengths, "ab" + "c" and "a" + "bc" would hash alike.
    let a = AuditRecord {
        action: "ab".into(),
        reason: "c".into(),
        ..record()
    };
    let b = AuditRecord {
        action: "a".into(),
        reason: "bc".into(),
        ..record()
    };
    assert_ne!(a.hash(&GENESIS), b.hash(&GENESIS));
}

#[test]
fn short_is_twelve_hex_digits() {
    let head = ChainHead {
        rows: 1,
        audit_id: Some(1),
        hash: vec![0xab; 32],
    };
    assert_eq!(head.short(), "abababababab");
    assert_eq!(head.hex().len(), 64);
}
