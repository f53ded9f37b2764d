#[tenantry::test(migration = crate::MIGRATIONS)]
async fn counts_invoices(t: tenantry::testing::TestDb) {
    let _ = t;
}

fn main() {}
