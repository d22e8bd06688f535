//! Prints the `TikvCluster` CRD as YAML; `crds/tikvclusters.yaml` is exactly this output.
//!
//! `cargo run -p operator --bin crdgen > crds/tikvclusters.yaml`

fn main() -> anyhow::Result<()> {
    print!("{}", operator::crd_yaml()?);
    Ok(())
}
