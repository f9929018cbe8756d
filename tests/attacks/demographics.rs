//! (filled in by its attack's work)
