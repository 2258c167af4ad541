//! `get_ref`, `get_mut` and `into_inner` for every layer's service, written once.

/// `get_ref`, `get_mut` and `into_inner` for a layer's service, as tower-http has them.
macro_rules! inner_access {
    (impl<$($g:ident),+> $ty:ty) => {
        impl<$($g),+> $ty {
            /// The inner service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }
            /// The inner service, mutably.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }
            /// The inner service, by value.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}
pub(crate) use inner_access;
