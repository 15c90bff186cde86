//! Internal protocols between Postern's processes, one file each, used by both ends; here what
//! they share: the [`Hello`] each side sends first, checked against the protocol's version.

pub mod auth;
pub mod queue;

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

/// What a protocol's [`Hello`] names and checks.
pub trait Protocol {
    /// The `service` field: a peer naming another one is on the wrong socket.
    const SERVICE: &'static str;
    /// Its name in messages ("auth", "queue").
    const NAME: &'static str;
    /// A different major version cannot talk to us at all.
    const MAJOR: u32;
    /// Informational (shown on a mismatch).
    const MINOR: u32;
}

/// The first frame of each side. Not `deny_unknown_fields`: whatever a future version adds
/// here, an old peer must still be able to read the version and say what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Hello<P: Protocol> {
    pub service: String,
    pub version: u32,
    pub minor: u32,
    #[serde(skip)]
    protocol: PhantomData<P>,
}

impl<P: Protocol> Hello<P> {
    pub fn ours() -> Hello<P> {
        Hello {
            service: P::SERVICE.into(),
            version: P::MAJOR,
            minor: P::MINOR,
            protocol: PhantomData,
        }
    }

    /// `Err` with a message for the log or the terminal when the peer cannot be talked to.
    pub fn check(&self) -> Result<(), String> {
        let (service, major, minor, name) = (P::SERVICE, P::MAJOR, P::MINOR, P::NAME);
        if self.service != service {
            return Err(format!(
                "peer speaks {:?}, expected {service:?} (wrong socket?)",
                self.service
            ));
        }
        if self.version != major {
            return Err(format!(
                "peer speaks {name} protocol {}.{}, we speak {major}.{minor} \
                 (mixed old and new binaries? restart postern after an upgrade)",
                self.version, self.minor
            ));
        }
        Ok(())
    }
}
