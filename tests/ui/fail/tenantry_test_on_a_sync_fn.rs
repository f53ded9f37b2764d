#[tenantry::test]
fn counts_invoices(t: tenantry::testing::TestDb) {
    let _ = t;
}

fn main() {}
