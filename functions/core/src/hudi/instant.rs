//! Timeline instants and their file names in `.hoodie/` (Hudi timeline layout version 1), in one
//! place: which file records which state of which action, and what a file found there is.
//!
//! Hudi names a commit's inflight file `<time>.inflight`, without the action (its oldest form),
//! and every other file `<time>.<action>[.<state>]`; the completed file has no state suffix.

/// The timeline actions this writer completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Action {
    /// Upserts and deletes written into file groups.
    Commit,
    /// A partition laid out again in more file groups: names the file groups it replaced.
    ReplaceCommit,
}

impl Action {
    pub(crate) const ALL: [Action; 2] = [Action::Commit, Action::ReplaceCommit];

    /// The action's name in file names and commit metadata.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::ReplaceCommit => "replacecommit",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.name() == name)
    }

    /// The other action: an instant time is unique across actions.
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Commit => Self::ReplaceCommit,
            Self::ReplaceCommit => Self::Commit,
        }
    }
}

/// Where an instant is in its life: each state is one file, the completed one written last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Requested,
    Inflight,
    Completed,
}

/// One timeline file: an instant time (`yyyyMMddHHmmssSSS`), its action, the state it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instant<'a> {
    pub(crate) time: &'a str,
    pub(crate) action: Action,
    pub(crate) state: State,
}

impl<'a> Instant<'a> {
    pub(crate) fn new(time: &'a str, action: Action, state: State) -> Self {
        Self {
            time,
            action,
            state,
        }
    }

    pub(crate) fn requested(time: &'a str, action: Action) -> Self {
        Self::new(time, action, State::Requested)
    }

    pub(crate) fn inflight(time: &'a str, action: Action) -> Self {
        Self::new(time, action, State::Inflight)
    }

    pub(crate) fn completed(time: &'a str, action: Action) -> Self {
        Self::new(time, action, State::Completed)
    }

    /// The file's name in `.hoodie/`.
    pub(crate) fn file_name(&self) -> String {
        let (time, action) = (self.time, self.action.name());
        match (self.action, self.state) {
            (_, State::Completed) => format!("{time}.{action}"),
            (Action::Commit, State::Inflight) => format!("{time}.inflight"),
            (_, State::Inflight) => format!("{time}.{action}.inflight"),
            (_, State::Requested) => format!("{time}.{action}.requested"),
        }
    }

    /// The instant a file in `.hoodie/` records; `None` for any other file there
    /// (`hoodie.properties`, the archive folder, an action this writer never writes).
    pub(crate) fn parse(file_name: &'a str) -> Option<Self> {
        let (time, rest) = file_name.split_once('.')?;
        if time.len() != 17 || !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (action, state) = match rest.split_once('.') {
            None if rest == "inflight" => (Action::Commit, State::Inflight),
            None => (Action::from_name(rest)?, State::Completed),
            Some((action, "requested")) => (Action::from_name(action)?, State::Requested),
            Some((action, "inflight")) if action != Action::Commit.name() => {
                (Action::from_name(action)?, State::Inflight)
            }
            Some(_) => return None,
        };
        Some(Self::new(time, action, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: &str = "20240301120000123";

    #[test]
    fn every_state_of_every_action_has_hudis_file_name_and_parses_back() {
        let names: Vec<String> = Action::ALL
            .into_iter()
            .flat_map(|action| {
                [State::Requested, State::Inflight, State::Completed]
                    .map(|state| Instant::new(TIME, action, state))
            })
            .map(|instant| {
                let name = instant.file_name();
                assert_eq!(Instant::parse(&name), Some(instant), "{name}");
                name
            })
            .collect();
        assert_eq!(
            names,
            [
                "20240301120000123.commit.requested",
                "20240301120000123.inflight",
                "20240301120000123.commit",
                "20240301120000123.replacecommit.requested",
                "20240301120000123.replacecommit.inflight",
                "20240301120000123.replacecommit",
            ]
        );
    }

    #[test]
    fn other_files_in_hoodie_are_no_instants() {
        for name in [
            "hoodie.properties",
            "archived",
            "20240301120000123.commit.inflight",
            "20240301120000123.clean",
            "20240301120000123.deltacommit.requested",
            "2024030112000012.commit",
            "2024030112000012x.commit",
        ] {
            assert_eq!(Instant::parse(name), None, "{name}");
        }
    }
}
