#[test]
fn smoke() {
    match lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", std::path::Path::new(".")) {
        Ok(m) => println!("ok {} dims {} measures {}", m.name, m.dimensions.len(), m.measures.len()),
        Err(d) => panic!("{d}"),
    }
}
