//! Unit tests of the session: commands fed one by one against a temporary mailstore.
