#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A partner's own type, declared a bypass actor.
struct MyPartner;

impl tenantry::bounds::BypassActor for MyPartner {
    fn bypass_actor(&self) -> tenantry::Actor {
        tenantry::Actor::job("not really")
    }
}

fn main() {}
