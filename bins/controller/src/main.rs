//! `idbind-controller`.

fn main() {}
