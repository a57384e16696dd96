//! The chart's templates reference only values that `values.yaml` documents.

use crate::problems::Problems;
use crate::yaml::yaml;
use crate::{CHART, VALUES, root};

#[test]
fn templates_use_only_documented_values() {
    let values = yaml(VALUES);
    let mut problems = Problems::default();
    let dir = root().join(CHART).join("templates");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.strip_prefix(root()).unwrap().display().to_string();
        for (start, _) in text.match_indices(".Values.") {
            let reference: String = text[start + ".Values.".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let reference = reference.trim_end_matches('.');
            // A key present in values.yaml, or one inside a map values.yaml leaves empty.
            let mut current = &values;
            for key in reference.split('.') {
                match current.get(key) {
                    Some(next) => current = next,
                    None => {
                        let open_map = current.as_mapping().is_some_and(|map| map.is_empty());
                        problems.check(open_map, || {
                            format!("{file}: .Values.{reference} is not in {VALUES}")
                        });
                        break;
                    }
                }
            }
        }
    }
    problems.finish();
}
