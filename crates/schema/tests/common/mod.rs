//! Catalog snapshots of real PostgreSQL 15 schemas (`fixtures/*.json`, written by
//! `fixtures/regenerate`), and lookups into them.
#![allow(dead_code)]

use qft_schema::model::*;
use qft_schema::Schema;

pub fn fixture(name: &str) -> Schema {
    let path = format!("{}/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub const FIXTURES: [(&str, &str); 4] = [
    ("template", "tenant_template"),
    ("awkward", "Edge Case"),
    ("kinds", "kinds"),
    ("app", "app"),
];

pub fn table<'a>(s: &'a mut Schema, name: &str) -> &'a mut Table {
    s.tables
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("table {name}"))
}

pub fn column<'a>(s: &'a mut Schema, t: &str, c: &str) -> &'a mut Column {
    table(s, t)
        .columns
        .iter_mut()
        .find(|x| x.name == c)
        .unwrap_or_else(|| panic!("column {t}.{c}"))
}

pub fn view<'a>(s: &'a mut Schema, name: &str) -> &'a mut View {
    s.views
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("view {name}"))
}

pub fn function<'a>(s: &'a mut Schema, name: &str) -> &'a mut Function {
    s.functions
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("function {name}"))
}

pub fn ty<'a>(s: &'a mut Schema, name: &str) -> &'a mut Type {
    s.types
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("type {name}"))
}

pub fn sequence<'a>(s: &'a mut Schema, name: &str) -> &'a mut Sequence {
    s.sequences
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("sequence {name}"))
}

pub fn index<'a>(s: &'a mut Schema, t: &str, name: &str) -> &'a mut Index {
    table(s, t)
        .indexes
        .iter_mut()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("index {name}"))
}

pub fn text(t: &str) -> qft_schema::SqlText {
    qft_schema::SqlText::plain(t)
}
