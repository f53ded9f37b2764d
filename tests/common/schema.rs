//! The schema the integration tests use: two tenant tables and a global one.
#![allow(dead_code, unreachable_pub, missing_docs)]

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::{Declared, TableDecl};

#[path = "../ui/support/schema.rs"]
mod shared;
pub use shared::*;

pub const SQL: &str = r#"
CREATE TABLE currencies (code char(3) PRIMARY KEY, name text NOT NULL);
INSERT INTO currencies VALUES ('EUR', 'Euro'), ('USD', 'US dollar'), ('GBP', 'Pound sterling');
CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE TABLE invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    project_id uuid NOT NULL,
    number text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    currency char(3) NOT NULL REFERENCES currencies (code),
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'sent', 'paid', 'void')),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (tenant_id, number),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)
);
"#;

pub fn decls() -> Vec<TableDecl> {
    vec![
        <projects::table as Declared>::DECL,
        <invoices::table as Declared>::DECL,
        <currencies::table as Declared>::DECL,
    ]
}

pub async fn apply(conn: &mut AsyncPgConnection) {
    conn.batch_execute(SQL).await.expect("test schema");
    tenantry::declare_tables(conn, &decls())
        .await
        .expect("declare tables");
}
