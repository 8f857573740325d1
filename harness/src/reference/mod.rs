//! Reference implementations that the harness ships: correct by default,
//! each with a catalogue of faults. They are the built-in SUT and the
//! subject of the self-test.

/// A catalogue of faults a reference can carry.
pub trait Fault: Copy + 'static {
    /// Every fault, in catalogue order.
    fn all() -> &'static [Self];
    /// The fault's name in profiles and the fault table.
    fn name(self) -> &'static str;
}

impl Fault for dmf_device::DeviceFault {
    fn all() -> &'static [Self] {
        &Self::ALL
    }
    fn name(self) -> &'static str {
        dmf_device::DeviceFault::name(self)
    }
}

/// Declares a fault catalogue: the enum, every fault in order (`ALL`),
/// and each fault's name in profiles and the fault table.
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

            /// The fault's name in profiles and the fault table.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Looks a fault up by name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|f| f.name() == name)
            }
        }

        impl $crate::reference::Fault for $name {
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

pub mod ability_cloud;
pub mod ability_device;
pub mod dmf_device;
pub mod dmf_server;
