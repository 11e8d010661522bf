//! HTTP routes of the backend.

pub mod tasks;
