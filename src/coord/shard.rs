//! Input files split over the processes of a run.
//!
//! Rule: sort the paths (as text) and drop duplicates; file `i` of that list goes to process
//! `i % num_processes`. Every process computes the same split from the same list, with no
//! communication; the shards are disjoint, cover every file, and differ in size by at most one.
//! [`Client::shard_files`] first checks that every process sees the same list (the usual way
//! this goes wrong: a glob that matches different files on different hosts).
use super::client::Client;
use super::error::CoordError;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn sorted(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = files.to_vec();
    v.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    v.dedup();
    v
}

/// The files of process `process_id` of `num_processes` (see the module doc for the rule).
/// An error when there are fewer files than processes: a process without data cannot train.
pub fn shard_files(
    files: &[PathBuf],
    process_id: u32,
    num_processes: u32,
) -> Result<Vec<PathBuf>, CoordError> {
    if num_processes == 0 || process_id >= num_processes {
        return Err(CoordError::Rejected(format!(
            "process {process_id} of {num_processes}: the process id must be in 0..{num_processes}"
        )));
    }
    let all = sorted(files);
    if (all.len() as u64) < u64::from(num_processes) {
        return Err(CoordError::Rejected(format!(
            "{} input file(s) cannot be split over {num_processes} processes: every process needs \
             at least one; write the data as at least {num_processes} files (e.g. more \
             `tpu-run create-data` output shards)",
            all.len()
        )));
    }
    Ok(all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (*i as u64) % u64::from(num_processes) == u64::from(process_id))
        .map(|(_, f)| f)
        .collect())
}

fn listing(files: &[PathBuf]) -> Vec<u8> {
    files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// The first difference between two sorted lists, for the error message.
fn first_difference(ours: &[PathBuf], theirs: &[String]) -> String {
    for (i, t) in theirs.iter().enumerate() {
        match ours.get(i) {
            Some(o) if Path::new(t) == o.as_path() => {}
            Some(o) => return format!("file #{i} is {} here and {t} on process 0", o.display()),
            None => return format!("process 0 also has {t}"),
        }
    }
    match ours.get(theirs.len()) {
        Some(o) => format!("this process also has {}", o.display()),
        None => "the lists are equal".into(),
    }
}

impl Client {
    /// This process's share of `files` (the input list `name`, e.g. "train"), after checking
    /// that every process was given the same list: each publishes its sorted list, and each
    /// compares its own with process 0's. Waits at most `timeout` for process 0's list.
    pub fn shard_files(
        &self,
        name: &str,
        files: &[PathBuf],
        timeout: Duration,
    ) -> Result<Vec<PathBuf>, CoordError> {
        let ours = self.agree_on_files(name, files, timeout)?;
        shard_files(&ours, self.process_id(), self.num_processes())
    }

    /// `files` sorted (duplicates dropped), after checking that every process was given the
    /// same list (see [`Client::shard_files`]).
    pub fn agree_on_files(
        &self,
        name: &str,
        files: &[PathBuf],
        timeout: Duration,
    ) -> Result<Vec<PathBuf>, CoordError> {
        let ours = sorted(files);
        let key = self.next_use(&format!("tpu-run/input-files/{name}"));
        self.put(&format!("{key}/{}", self.process_id()), &listing(&ours))?;
        let theirs = self.get(&format!("{key}/0"), timeout)?;
        if theirs != listing(&ours) {
            let theirs: Vec<String> = if theirs.is_empty() {
                Vec::new()
            } else {
                String::from_utf8_lossy(&theirs)
                    .split('\n')
                    .map(str::to_string)
                    .collect()
            };
            return Err(CoordError::Rejected(format!(
                "process {} sees {} {name} input file(s), process 0 sees {}: every worker must be \
                 given the same files ({})",
                self.process_id(),
                ours.len(),
                theirs.len(),
                first_difference(&ours, &theirs)
            )));
        }
        Ok(ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    fn files(n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("/data/part-{i:05}.tfrecord")))
            .collect()
    }

    #[test]
    fn shards_are_disjoint_complete_balanced_and_order_independent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for (n_files, n_procs) in [(1, 1), (7, 3), (12, 4), (100, 8), (5, 5)] {
            let all = files(n_files);
            let mut seen = BTreeSet::new();
            let mut sizes = Vec::new();
            for p in 0..n_procs {
                // Every process may list the files in another order, with repeats.
                let mut given = all.clone();
                given.push(all[p as usize % n_files].clone());
                given.shuffle(&mut rng);
                let mine = shard_files(&given, p, n_procs).unwrap();
                assert_eq!(mine, shard_files(&all, p, n_procs).unwrap());
                sizes.push(mine.len());
                for f in mine {
                    assert!(seen.insert(f), "a file went to two processes");
                }
            }
            assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{sizes:?}");
        }
        // Round robin over the sorted list.
        assert_eq!(
            shard_files(&files(5), 1, 2).unwrap(),
            vec![files(5)[1].clone(), files(5)[3].clone()]
        );
    }

    #[test]
    fn too_few_files_or_bad_ids_are_errors() {
        let e = shard_files(&files(3), 0, 4).unwrap_err();
        assert!(
            e.to_string()
                .contains("3 input file(s) cannot be split over 4"),
            "{e}"
        );
        assert!(shard_files(&files(3), 3, 3).is_err());
        assert!(shard_files(&files(3), 0, 0).is_err());
    }

    #[test]
    fn differences_are_described() {
        let ours = files(3);
        let theirs: Vec<String> = ours.iter().map(|f| f.display().to_string()).collect();
        assert!(first_difference(&ours, &theirs[..2]).contains("this process also has"));
        let mut longer = theirs.clone();
        longer.push("/data/extra".into());
        assert!(first_difference(&ours, &longer).contains("process 0 also has /data/extra"));
        let mut other = theirs.clone();
        other[1] = "/data/x".into();
        let d = first_difference(&ours, &other);
        assert!(d.contains("file #1") && d.contains("/data/x"), "{d}");
    }
}
