//! The kernel side: the embedded XDP objects, loading and attaching them,
//! draining the sample ring buffer and the capture sources, sampling
//! control, re-attaching to an interface that comes back, privileges and
//! interface names.

pub mod adaptive;
pub mod capture;
pub mod events;
pub mod identity;
pub mod iface;
pub mod least_privilege;
pub mod objects;
pub mod privileges;
pub mod reattach;
pub mod sensor;
