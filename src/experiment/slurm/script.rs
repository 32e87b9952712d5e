//! The batch script's text, and what it refuses to hold. `#SBATCH` lines are comments to
//! the shell, read by sbatch alone: nothing can quote a newline there (it would end the
//! comment and start a line the node runs), so a control character in an option or in
//! the experiment folder is refused, naming the value. What can be quoted is: the folder
//! in `#SBATCH --output` for sbatch (double quotes, `\"`, and `%%` for a `%` of the
//! name), the executable and the folder in the task's command line for the shell.

use super::SlurmConfig;
use crate::experiment::plan::{Plan, SLURM_DIR};
use crate::setting;
use anyhow::{bail, Result};
use std::path::Path;

/// `0-3`, `1,3,5-7`: SLURM's array list of `indices` (sorted).
pub fn array_list(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", indices[i], indices[j])
        } else {
            indices[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// `'...'` for the shell: nothing inside single quotes is special but the quote itself.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `"..."` as sbatch reads an `#SBATCH` option: quotes group the text, spaces included,
/// and a backslash makes the next character plain.
fn sbatch_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
}

/// The experiment folder as text the script can hold; `out` is made absolute first, as
/// the plan holds it.
fn folder_text(out: &Path) -> Result<String> {
    let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let Some(text) = abs.to_str() else {
        return Err(setting::bad(
            "out",
            format!("{abs:?} is not UTF-8: the batch script names the folder as text"),
        ));
    };
    if text.chars().any(char::is_control) {
        return Err(setting::bad(
            "out",
            format!("{text:?} holds a control character, which the batch script's #SBATCH --output line cannot hold (a newline would start a line the node runs)"),
        ));
    }
    // SLURM reads a file name holding a backslash literally, `%a` included: every task
    // would log to one file.
    if text.contains('\\') {
        return Err(setting::bad(
            "out",
            format!("{text:?} holds a backslash, which turns off the task number (%a) in the tasks' log names"),
        ));
    }
    Ok(text.to_string())
}

/// Refuses a value the batch script of an experiment in `out` cannot hold, naming it:
/// before anything of the experiment is written.
pub fn check(out: &Path, cfg: &SlurmConfig) -> Result<()> {
    folder_text(out)?;
    for a in &cfg.sbatch_args {
        if a.chars().any(char::is_control) {
            return Err(setting::bad(
                "sbatch_arg",
                format!("{a:?} holds a control character, which an #SBATCH line cannot hold (a newline would start a line the node runs)"),
            ));
        }
        if !a.starts_with('-') {
            return Err(setting::bad(
                "sbatch_arg",
                format!(
                    "{a:?} does not start with -: give each option whole, e.g. --partition=gpu"
                ),
            ));
        }
    }
    let exe = cfg.exe.to_string_lossy();
    if exe.contains(['\n', '\0']) {
        bail!("the flarecast executable's path {exe:?} holds a newline or NUL: the batch script cannot run it");
    }
    Ok(())
}

/// The batch script of the array over `indices`.
pub fn script(plan: &Plan, indices: &[usize], cfg: &SlurmConfig) -> Result<String> {
    check(&plan.out, cfg)?;
    let out = folder_text(&plan.out)?;
    let throttle = if cfg.jobs > 0 {
        format!("%{}", cfg.jobs)
    } else {
        String::new()
    };
    let logs = format!("{}/{SLURM_DIR}/cell-", out.replace('%', "%%"));
    let mut s = String::from("#!/bin/sh\n");
    s += "# flarecast experiment: one array task per cell (experiment.json lists them).\n";
    s += "#SBATCH --job-name=flarecast-experiment\n";
    s += &format!("#SBATCH --array={}{throttle}\n", array_list(indices));
    s += &format!(
        "#SBATCH --output={}\n",
        sbatch_quote(&format!("{logs}%a.log"))
    );
    s += "#SBATCH --open-mode=append\n";
    for a in &cfg.sbatch_args {
        s += &format!("#SBATCH {a}\n");
    }
    s += &format!(
        "exec {} experiment cell --out {} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        shell_quote(&cfg.exe.to_string_lossy()),
        shell_quote(&out)
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::plan::{Grid, PlanRequest};
    use crate::model::Arch;

    fn config(args: &[&str]) -> SlurmConfig {
        SlurmConfig {
            exe: "/opt/it's/flarecast".into(),
            jobs: 2,
            sbatch_args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn array_lists_compress_runs() {
        assert_eq!(array_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_list(&[1, 3, 5, 6, 7]), "1,3,5-7");
        assert_eq!(array_list(&[2]), "2");
    }

    #[test]
    fn the_folder_is_quoted_for_sbatch_and_for_the_shell() {
        let plan = Plan::new(&PlanRequest {
            out: "/x/my exp 'a' \"b\" 100%".into(),
            images: "/x/i".into(),
            labels: "/x/l".into(),
            grid: Grid {
                archs: vec![Arch::Attention],
                seeds: vec![4],
                folds: vec![1, 2],
            },
            train_flags: vec![],
        })
        .unwrap();
        let text = script(&plan, &[0, 1], &config(&["--partition=gpu"])).unwrap();
        assert_eq!(
            text,
            "#!/bin/sh\n\
             # flarecast experiment: one array task per cell (experiment.json lists them).\n\
             #SBATCH --job-name=flarecast-experiment\n\
             #SBATCH --array=0-1%2\n\
             #SBATCH --output=\"/x/my exp 'a' \\\"b\\\" 100%%/slurm/cell-%a.log\"\n\
             #SBATCH --open-mode=append\n\
             #SBATCH --partition=gpu\n\
             exec '/opt/it'\\''s/flarecast' experiment cell --out '/x/my exp '\\''a'\\'' \"b\" 100%' \
             --index \"$SLURM_ARRAY_TASK_ID\"\n"
        );
    }

    #[test]
    fn control_characters_and_backslashes_are_refused_naming_the_value() {
        let out = Path::new("/x/exp");
        for (arg, setting) in [
            ("--partition=x\ntouch /tmp/PWNED", "sbatch_arg"),
            ("--comment=a\rb", "sbatch_arg"),
            ("partition=x", "sbatch_arg"),
        ] {
            let err = check(out, &config(&[arg])).unwrap_err();
            assert_eq!(setting::find(&err).unwrap().setting, setting);
            assert!(err.to_string().contains(&format!("{arg:?}")), "{err}");
        }
        for bad in ["/x/exp\ntouch /tmp/PWNED", "/x/a\0b", "/x/a\\b"] {
            let err = check(Path::new(bad), &config(&[])).unwrap_err();
            assert_eq!(setting::find(&err).unwrap().setting, "out");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let mut cfg = config(&[]);
        cfg.exe = "/x/fl\narecast".into();
        assert!(check(out, &cfg).is_err());
    }
}
