fn main() {
    if let Err(e) = netloom::app::run(std::env::args_os().nth(1).map(Into::into)) {
        eprintln!("netloom: {e}");
        std::process::exit(1);
    }
}
