//! The experiment document: `apiVersion`, `kind`, `metadata`, `spec`, read into an
//! [`Experiment`]. Fields kept for later versions (none at the moment) are refused as not
//! supported yet, not as unknown.

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_agent::fault::Fault;

use super::document::{Document, Fields, Later, Node};
use super::error::{FieldPath, SpecError};
use super::guards::{self, Guard, Recovery};
use super::phases::{self, Phase};
use super::schedule::Schedule;
use super::targets::{self, Targets};
use super::{faults, schedule, selector};

/// The only `apiVersion` this version reads.
pub const API_VERSION: &str = "faultline.dev/v1alpha1";
/// The only `kind` this version reads.
pub const KIND: &str = "Experiment";

/// Fields kept for later versions: none at the moment.
const LATER: [Later<'static>; 0] = [];

/// A validated experiment spec. Everything has been checked and converted: the faults are the
/// agent's domain values, ready to be sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// `metadata.name`: a DNS label (lowercase letters, digits, `-`; at most 63).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub targets: Targets,
    /// `(route, fault)` in spec order; each fault's origin is this experiment.
    pub faults: Vec<(String, Fault)>,
    pub duration: Duration,
    /// The seed that makes the choice of agents repeatable; `None`: the controller picks one
    /// (and records it).
    pub seed: Option<u64>,
    /// May put faults on a route of an agent that a running experiment already faults.
    pub allow_overlap: bool,
    /// `spec.guards`, in spec order.
    pub guards: Vec<Guard>,
    /// `spec.recovery` (defaults when left out).
    pub recovery: Recovery,
    /// `spec.requireTraffic`: a fault that matched nothing fails the experiment.
    pub require_traffic: bool,
    /// `spec.phases`: a ramp of fault intensities; empty: `faults` for the whole duration.
    pub phases: Vec<Phase>,
    /// `spec.stopAtBreakingPoint`: a ramp that a guard stops reports where it broke.
    pub stop_at_breaking_point: bool,
    /// `spec.schedule`: the experiment is a template whose Start arms the schedule.
    pub schedule: Option<Schedule>,
}

impl Experiment {
    /// Parses a YAML or JSON spec. Errors are located in `text`.
    pub fn parse(text: &str) -> Result<Experiment, SpecError> {
        from_document(&Document::parse(text)?)
    }
}

pub(crate) fn from_document(doc: &Document) -> Result<Experiment, SpecError> {
    let root = &doc.root;
    let top = FieldPath::root();
    if root.is_null() {
        return Err(SpecError::invalid(
            top,
            root.loc,
            format!("the document is empty; expected apiVersion: {API_VERSION}, kind: {KIND}"),
        ));
    }
    let f = Fields::open(root, &top, &["apiVersion", "kind", "metadata", "spec"], &[])?;

    let api_version = f.required("apiVersion")?;
    let v = api_version.str(&f.path("apiVersion"))?;
    if v != API_VERSION {
        return Err(SpecError::invalid(
            f.path("apiVersion"),
            api_version.field_loc(),
            format!("unsupported apiVersion {v:?} (expected {API_VERSION})"),
        ));
    }
    let kind = f.required("kind")?;
    let k = kind.str(&f.path("kind"))?;
    if k != KIND {
        return Err(SpecError::invalid(
            f.path("kind"),
            kind.field_loc(),
            format!("unsupported kind {k:?} (expected {KIND})"),
        ));
    }

    let (name, labels) = metadata(f.required("metadata")?, &f.path("metadata"))?;

    let spec_path = f.path("spec");
    let spec = Fields::open(
        f.required("spec")?,
        &spec_path,
        &[
            "targets",
            "faults",
            "duration",
            "allowOverlap",
            "seed",
            "guards",
            "recovery",
            "requireTraffic",
            "phases",
            "stopAtBreakingPoint",
            "schedule",
        ],
        &LATER,
    )?;
    let mut targets = targets::parse(spec.required("targets")?, &spec.path("targets"))?;
    let faults_node = spec.required("faults")?;
    let faults = faults::parse(faults_node, &spec.path("faults"), &name)?;
    check_routes(&mut targets, &faults, faults_node, &spec.path("faults"))?;
    let phases = match spec.get("phases") {
        Some(n) => phases::parse(n, &spec.path("phases"), faults_node, &faults, &name)?,
        None => Vec::new(),
    };
    let duration = duration_of(&spec, &phases)?;
    let stop_at_breaking_point = match spec.get("stopAtBreakingPoint") {
        Some(n) if phases.is_empty() => {
            return Err(SpecError::invalid(
                spec.path("stopAtBreakingPoint"),
                n.field_loc(),
                "only a ramp (spec.phases) has a breaking point",
            ));
        }
        Some(n) => n.bool(&spec.path("stopAtBreakingPoint"))?,
        None => false,
    };
    let allow_overlap = match spec.get("allowOverlap") {
        Some(n) => n.bool(&spec.path("allowOverlap"))?,
        None => false,
    };
    let seed = match spec.get("seed") {
        Some(n) => Some(n.u64(&spec.path("seed"))?),
        None => None,
    };
    let guards = match spec.get("guards") {
        Some(n) => guards::parse(n, &spec.path("guards"), &targets.routes)?,
        None => Vec::new(),
    };
    let recovery = match spec.get("recovery") {
        Some(n) => guards::parse_recovery(n, &spec.path("recovery"))?,
        None => Recovery::default(),
    };
    let schedule = match spec.get("schedule") {
        Some(n) => Some(schedule::parse(n, &spec.path("schedule"))?),
        None => None,
    };
    let require_traffic = match spec.get("requireTraffic") {
        Some(n) => n.bool(&spec.path("requireTraffic"))?,
        None => false,
    };
    Ok(Experiment {
        name,
        labels,
        targets,
        faults,
        duration,
        seed,
        allow_overlap,
        guards,
        recovery,
        require_traffic,
        phases,
        stop_at_breaking_point,
        schedule,
    })
}

/// `spec.duration`: required without phases; with them, their sum (given or left out).
fn duration_of(spec: &Fields<'_>, phases: &[Phase]) -> Result<Duration, SpecError> {
    let path = spec.path("duration");
    if phases.is_empty() {
        return spec.required("duration")?.positive_duration(&path);
    }
    let sum: Duration = phases.iter().map(|p| p.duration).sum();
    if let Some(n) = spec.get("duration") {
        let given = n.positive_duration(&path)?;
        if given != sum {
            return Err(SpecError::invalid(
                path,
                n.field_loc(),
                format!(
                    "{} differs from the phases' total, {}; leave duration out or make them agree",
                    humantime::format_duration(given),
                    humantime::format_duration(sum)
                ),
            ));
        }
    }
    Ok(sum)
}

fn metadata(
    node: &Node,
    path: &FieldPath,
) -> Result<(String, BTreeMap<String, String>), SpecError> {
    let f = Fields::open(node, path, &["name", "labels"], &[])?;
    let name_node = f.required("name")?;
    let name = name_node.str(&f.path("name"))?;
    check_name(name).map_err(|m| SpecError::invalid(f.path("name"), name_node.field_loc(), m))?;
    let labels = match f.get("labels") {
        Some(n) => selector::parse_labels(n, &f.path("labels"))?,
        None => BTreeMap::new(),
    };
    Ok((name.to_owned(), labels))
}

/// An experiment name is a DNS label, as Kubernetes object names mostly are: it appears in
/// commands, metrics labels and the agents' fault origins.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use 1 to 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

/// Every fault's route must be one of `spec.targets.routes`; when that list is left out it
/// becomes the faults' routes.
fn check_routes(
    targets: &mut Targets,
    faults: &[(String, Fault)],
    faults_node: &Node,
    faults_path: &FieldPath,
) -> Result<(), SpecError> {
    if targets.routes.is_empty() {
        for (route, _) in faults {
            if !targets.routes.contains(route) {
                targets.routes.push(route.clone());
            }
        }
        return Ok(());
    }
    for (i, (route, _)) in faults.iter().enumerate() {
        if !targets.routes.contains(route) {
            let path = faults_path.index(i).key("route");
            let loc = faults_node.locate(&path.segments()[faults_path.segments().len()..]);
            return Err(SpecError::invalid(
                path,
                loc,
                format!(
                    "route {route:?} is not one of spec.targets.routes ({})",
                    targets.routes.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::error::ErrorKind;
    use crate::spec::targets::Mode;

    const VALID: &str = "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata:
  name: redis-latency
  labels: {team: storage}
spec:
  targets:
    selector:
      matchLabels: {app: redis}
    mode: percent
    value: 50
  faults:
    - route: redis
      type: latency
      attributes: {latency: 100}
  duration: 5m
  seed: 42
";

    #[test]
    fn a_valid_spec_becomes_an_experiment() {
        let e = Experiment::parse(VALID).unwrap();
        assert_eq!(e.name, "redis-latency");
        assert_eq!(e.labels.get("team").map(String::as_str), Some("storage"));
        assert_eq!(e.duration, Duration::from_secs(300));
        assert_eq!(e.seed, Some(42));
        assert!(!e.allow_overlap);
        assert_eq!(e.targets.routes, vec!["redis".to_string()]);
        assert!(matches!(e.targets.mode, Mode::Percent(p) if p.get() == 50));
        assert_eq!(e.faults.len(), 1);
    }

    #[test]
    fn json_specs_are_read_and_located_too() {
        let json = r#"{
  "apiVersion": "faultline.dev/v1alpha1",
  "kind": "Experiment",
  "metadata": {"name": "j"},
  "spec": {
    "targets": {"all": true},
    "faults": [{"route": "r", "type": "down"}],
    "duration": "250ms"
  }
}"#;
        let e = Experiment::parse(json).unwrap();
        assert_eq!(e.duration, Duration::from_millis(250));
        assert!(e.targets.selector.is_everything());

        let bad = json.replace("250ms", "soon");
        let e = Experiment::parse(&bad).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.duration");
        assert_eq!(e.location.map(|l| l.line), Some(8));
    }

    #[test]
    fn a_schedule_is_read_and_its_errors_located() {
        assert_eq!(Experiment::parse(VALID).unwrap().schedule, None);
        let spec = VALID.replace("  seed: 42\n", "  schedule: {cron: \"0 9 * * 1-5\"}\n");
        assert!(Experiment::parse(&spec).unwrap().schedule.is_some());
        let spec = VALID.replace("  seed: 42\n", "  schedule:\n    - {cron: x}\n");
        let e = Experiment::parse(&spec).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(e.path.to_string(), "spec.schedule");
        assert_eq!(e.location.map(|l| l.line), Some(17));
        assert_eq!(e.message, "must be a mapping, got a list");
    }

    #[test]
    fn header_errors() {
        let e = Experiment::parse(&VALID.replace("v1alpha1", "v2")).unwrap_err();
        assert_eq!(e.path.to_string(), "apiVersion");
        assert_eq!(e.location.map(|l| (l.line, l.column)), Some((1, 13)));
        let e = Experiment::parse(&VALID.replace("kind: Experiment", "kind: Pod")).unwrap_err();
        assert_eq!(e.path.to_string(), "kind");
        let e = Experiment::parse(&VALID.replace("redis-latency", "Redis_Latency")).unwrap_err();
        assert_eq!(e.path.to_string(), "metadata.name");
        let e = Experiment::parse("").unwrap_err();
        assert!(e.message.starts_with("the document is empty"), "{e}");
        let e = Experiment::parse("- 1\n").unwrap_err();
        assert_eq!(e.message, "must be a mapping, got a list");
    }

    #[test]
    fn fault_routes_must_be_targeted_routes() {
        let spec = VALID.replace(
            "    mode: percent\n",
            "    routes: [postgres]\n    mode: percent\n",
        );
        let e = Experiment::parse(&spec).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.faults[0].route");
        assert_eq!(e.location.map(|l| l.line), Some(14));
    }

    #[test]
    fn durations() {
        let e = Experiment::parse(&VALID.replace("5m", "0s")).unwrap_err();
        assert_eq!(e.message, "must be longer than zero");
        let e = Experiment::parse(&VALID.replace("5m", "300")).unwrap_err();
        assert_eq!(
            e.message,
            "must be a duration such as \"250ms\" or \"5m\", got the number 300"
        );
    }
}
