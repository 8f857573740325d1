//! The reference implementations dmconf ships, one per role of each
//! protocol: correct by default, each with a catalogue of realistic
//! faults (the self-test proves that every case fails against one of
//! them) and of legal variants (a device that polls, or sends requests of
//! its own; every case must pass against those). The harness starts them
//! in process, through [`all`], with the environment a command SUT would
//! get; `dmconf-reference` runs the servers on their own ([`cli`]).

pub mod ability_cloud;
pub mod ability_device;
pub mod cli;
pub mod dmf_device;
pub mod dmf_server;
mod download;

use std::sync::Arc;

use dmconf_harness::References;

/// Every reference, for the harness to start.
pub fn all() -> References {
    References::new(vec![
        Arc::new(dmf_device::Reference),
        Arc::new(dmf_server::Reference),
        Arc::new(ability_device::Reference),
        Arc::new(ability_cloud::Reference),
    ])
}

/// A catalogue of faults a reference can carry.
pub trait Fault: Copy + 'static {
    /// Every fault, in catalogue order.
    fn all() -> &'static [Self];
    /// The fault's name in profiles and the fault table.
    fn name(self) -> &'static str;
    /// Looks a fault up by name.
    fn named(name: Option<&str>) -> Result<Option<Self>, String> {
        name.map(|n| {
            Self::all()
                .iter()
                .copied()
                .find(|f| f.name() == n)
                .ok_or_else(|| format!("unknown fault `{n}`"))
        })
        .transpose()
    }
}

/// Declares a fault catalogue: the enum, every fault in order (`ALL`),
/// their names (`NAMES`), and each fault's name in profiles and the fault
/// table.
macro_rules! fault_catalogue {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[doc = $doc:expr])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl $name {
            /// Every fault, in catalogue order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Every fault's name, in catalogue order.
            pub const NAMES: &'static [&'static str] = &[$($text),*];

            /// The fault's name in profiles and the fault table.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl $crate::Fault for $name {
            fn all() -> &'static [Self] {
                Self::ALL
            }
            fn name(self) -> &'static str {
                $name::name(self)
            }
        }
    };
}
pub(crate) use fault_catalogue;
