//! A deploy root on a host: every entry of it ([`layout`]), its history ([`history`]) and its
//! trust policy ([`trust`]).

pub mod carried;
pub mod history;
pub mod layout;
pub mod trust;
