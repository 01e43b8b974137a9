//! The one merge rule of every option section, and the macro that declares
//! a section with it. Output components declare their own sections with
//! [`section!`] in their modules, so this file imports nothing of theirs.

/// Field by field, `self`'s value where it has one, else `other`'s.
pub trait Merge {
    fn or(self, other: Self) -> Self;
}

impl<T> Merge for Option<T> {
    fn or(self, other: Self) -> Self {
        Option::or(self, other)
    }
}

/// Declares a section struct and its [`Merge`]: each field once, so a new
/// option cannot be left out of the merge.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $crate::config::merge::Merge for $name {
            fn or(self, other: Self) -> Self {
                $name { $( $field: $crate::config::merge::Merge::or(self.$field, other.$field), )* }
            }
        }
    };
}
pub(crate) use section;

/// The value of an option that has a default in its section: after the
/// merge with [`crate::config::flags::RunArgs::defaults`] it is always
/// there (the `every_default_parses` and `no_file_is_the_flag_defaults`
/// tests cover each one).
pub fn defaulted<T>(v: Option<T>) -> T {
    v.unwrap_or_else(|| unreachable!("an option with a default has no value"))
}
