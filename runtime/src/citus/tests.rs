use super::*;

#[test]
fn steps_render_the_citus_calls() {
    let step = |table: &str, placement, colocate_with: Option<&str>| PlanStep {
        table: table.into(),
        placement,
        colocate_with: colocate_with.map(Into::into),
    };
    assert_eq!(
        step("public.tenants", Placement::Reference, None).sql(),
        "SELECT create_reference_table('public.tenants');"
    );
    assert_eq!(
        step("public.audit_log", Placement::CoordinatorLocal, None).sql(),
        "SELECT citus_add_local_table_to_metadata('public.audit_log');"
    );
    let distributed = || Placement::Distributed {
        column: "tenant_id".into(),
    };
    assert_eq!(
        step("public.projects", distributed(), None).sql(),
        "SELECT create_distributed_table('public.projects', 'tenant_id');"
    );
    assert_eq!(
        step("public.invoices", distributed(), Some("public.projects")).sql(),
        "SELECT create_distributed_table('public.invoices', 'tenant_id', colocate_with => 'public.projects');"
    );
    assert_eq!(quote_ident("tenantry_app"), "tenantry_app");
    assert_eq!(quote_ident("App Role"), "\"App Role\"");
}
