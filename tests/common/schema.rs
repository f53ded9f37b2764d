//! The schema the integration tests use: two tenant tables and a global one.
#![allow(dead_code, unreachable_pub, missing_docs)]

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::{global_table, tenant_table, Declared, TableDecl};
use uuid::Uuid;

diesel::table! {
    projects (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    invoices (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        project_id -> Uuid,
        number -> Text,
        amount_cents -> Int8,
        currency -> Bpchar,
        status -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    currencies (code) {
        code -> Bpchar,
        name -> Text,
    }
}

diesel::joinable!(invoices -> projects (project_id));
diesel::joinable!(invoices -> currencies (currency));
diesel::allow_tables_to_appear_in_same_query!(projects, invoices, currencies);

#[tenant_table(generated(id, created_at))]
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[tenant_table(generated(id, created_at))]
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = invoices)]
pub struct Invoice {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub project_id: Uuid,
    pub number: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[global_table]
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = currencies)]
pub struct Currency {
    pub code: String,
    pub name: String,
}

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
