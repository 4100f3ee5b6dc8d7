//! Library-level tests of identity.
