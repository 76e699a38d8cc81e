//! Where a statement runs. Pure: `route(...) -> Decision`, no I/O.
//!
//! Every statement goes to the primary for now; the classifier-driven rules
//! (read/write split, hints, transactions) extend `route` without changing
//! its callers. Imports nothing but `cluster::Topology` data.

/// The backend a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    /// A backend by its index in the topology.
    Backend(usize),
}

/// A routing decision. `reason` is the metric label, the EXPLAIN ROUTE text
/// and what tests assert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub reason: &'static str,
}

/// Routes a client command.
pub fn route() -> Decision {
    Decision {
        target: Target::Primary,
        reason: "primary_only",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_goes_to_the_primary_for_now() {
        assert_eq!(route().target, Target::Primary);
    }
}
