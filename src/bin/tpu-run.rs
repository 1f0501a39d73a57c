fn main() -> anyhow::Result<()> {
    tpu_run::cli::main()
}
