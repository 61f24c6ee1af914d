//! `faulty env`: prints the plugin's environment, one `NAME=value` per line,
//! sorted (newlines in values as `\n`), so tests can see exactly what the
//! host handed it.

pub fn report() -> String {
    let mut vars: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy().replace('\n', "\\n")))
        .collect();
    vars.sort();
    vars.iter().map(|line| format!("{line}\n")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_the_process_environment() {
        let text = super::report();
        assert!(text.lines().any(|l| l.starts_with("PATH=")), "{text}");
    }
}
