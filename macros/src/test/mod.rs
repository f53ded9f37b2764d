//! `#[tenantry::test]`: parse (`attr`, `function`) → expand.

mod attr;
mod expand;
mod function;

#[cfg(test)]
mod tests;

pub(crate) use expand::expand;
