//! A multi-tenant notes service on tenantry, the one `docs/getting-started.md` walks through.
#![allow(missing_docs)] // this repository lints for docs on every item; an app need not

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenantry::auth::Authenticator;
use tenantry::bounds::Declared;
use tenantry::identity::{CsrfPolicy, Tenantry};
use tenantry::prelude::*;
use tenantry::serve::{serve, shutdown_signal};
use tenantry::settings::Settings;
use tenantry::{requires_role, tenant_table, Db, DbError};
use uuid::Uuid;

diesel::table! {
    notes (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        body -> Text,
        created_at -> Timestamptz,
    }
}

/// A note of one tenant.
#[tenant_table(generated(id, created_at))]
#[derive(Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = notes)]
struct Note {
    tenant_id: Uuid,
    id: Uuid,
    body: String,
    created_at: DateTime<Utc>,
}

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("notes/migrations");

#[derive(Clone)]
struct AppState {
    tenantry: Tenantry,
}

impl FromRef<AppState> for Tenantry {
    fn from_ref(state: &AppState) -> Tenantry {
        state.tenantry.clone()
    }
}

/// The active tenant's notes, newest first: every role of the tenant may read.
#[requires_role(ClientViewer)]
async fn list(ctx: TenantCtx, State(app): State<AppState>) -> Result<Json<Vec<Note>>, DbError> {
    let rows = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            Note::scoped(conn)
                .order(notes::created_at.desc())
                .load(conn)
        })
        .await?;
    Ok(Json(rows))
}

#[derive(serde::Deserialize)]
struct NewBody {
    body: String,
}

/// Adds a note to the active tenant: a viewer's handler could not compile this insert.
#[requires_role(Partner)]
async fn create(
    ctx: TenantCtx,
    State(app): State<AppState>,
    Json(new): Json<NewBody>,
) -> Result<Json<Note>, DbError> {
    let note = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            Note::insert(conn, NewNote { body: new.body }).get_result(conn)
        })
        .await?;
    Ok(Json(note))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let settings = Settings::from_env()?; // DATABASE_URL, TENANTRY_AUTH_MODE, ...: docs/settings.md
    let conn = tenantry::tls::establish(&settings.database_url).await?;
    let mut conn = tenantry::migrations::migrate_with_roles(conn, &settings.roles, MIGRATIONS)
        .await?
        .conn;
    tenantry::declare_tables(&mut conn, &[<notes::table as Declared>::DECL]).await?;
    drop(conn);

    let db = Db::connect(settings.db_config()).await?;
    let state = AppState {
        tenantry: Tenantry {
            db: db.clone(),
            auth: Arc::new(Authenticator::from_settings(&settings)?),
            csrf: CsrfPolicy::new(settings.allowed_origins.clone()),
        },
    };
    let router = Router::new()
        .route("/api/notes", get(list).post(create))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(settings.bind_addr).await?;
    println!("notes on http://{}", listener.local_addr()?);
    serve(listener, router, settings.http, shutdown_signal()).await?;
    db.close();
    Ok(())
}
