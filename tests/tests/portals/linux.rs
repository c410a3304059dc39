//! The Linux scenario of the portal tests.
