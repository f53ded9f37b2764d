#[tenantry::test]
async fn counts_invoices() {}

fn main() {}
