//! Builders for configuration structs.
//!
//! The toolkit's configuration structs are `#[non_exhaustive]` (a new option
//! is not a breaking change) and are deserialized from files or built in code
//! through a builder whose `build` validates, so a bad value is refused where
//! it is set, with the field named. Their fields stay public (to read, and to
//! change a copy); the components that take them validate again.
//! [`config_builder!`](crate::config_builder) writes such a builder: a setter
//! per option, starting from the defaults, and `build` calling the struct's own
//! `validate`.

/// Writes a validating builder for a configuration struct.
///
/// The struct must have a `validate(&self) -> Result<(), E>` method and
/// implement `Default`, unless a start value is given after the fields with
/// `starting from expr`; required values become arguments of `builder`,
/// named after the struct (`Target(name: Type, ...) => ...`), which the start
/// expression can use. Each listed field
/// gets a setter of the same name; a field marked `into` takes
/// `impl Into<Type>` (an `Option<u32>` field then takes a plain `7`). The
/// struct gains `builder()`, the builder `build()`, and `From<Struct>` for the
/// builder (to change a copy of an existing configuration). The struct must
/// be `Debug + Clone` (the builder derives both) and have no field named
/// `build`; the builder is `pub`.
///
/// ```
/// use perf_core::config_builder;
///
/// #[derive(Debug, Clone, PartialEq)]
/// #[non_exhaustive]
/// pub struct Retry {
///     pub attempts: u32,
///     pub backoff_ms: Option<u64>,
/// }
///
/// impl Default for Retry {
///     fn default() -> Self {
///         Self { attempts: 3, backoff_ms: None }
///     }
/// }
///
/// impl Retry {
///     pub fn validate(&self) -> Result<(), String> {
///         if self.attempts == 0 || self.attempts > 10 {
///             return Err(format!("attempts: {} is outside 1 to 10", self.attempts));
///         }
///         Ok(())
///     }
/// }
///
/// config_builder! {
///     /// Builds a [`Retry`].
///     Retry => RetryBuilder, String {
///         attempts: u32,
///         backoff_ms: Option<u64> => into,
///     }
/// }
///
/// # mod required {
/// #[derive(Debug, Clone)]
/// #[non_exhaustive]
/// pub struct Upstream { pub host: String, pub port: u16 }
/// impl Upstream {
///     pub fn validate(&self) -> Result<(), String> {
///         if self.host.is_empty() { Err("host: must not be empty".into()) } else { Ok(()) }
///     }
/// }
/// perf_core::config_builder! {
///     /// Builds an [`Upstream`]: the host is required.
///     Upstream(host: impl Into<String>) => UpstreamBuilder, String { port: u16 }
///     starting from Upstream { host: host.into(), port: 80 }
/// }
/// # pub fn check() {
/// assert_eq!(Upstream::builder("db").port(5432).build().unwrap().port, 5432);
/// assert!(Upstream::builder("").build().is_err());
/// # } }
/// # required::check();
/// let retry = Retry::builder().attempts(5).backoff_ms(250).build()?;
/// assert_eq!(retry, Retry { attempts: 5, backoff_ms: Some(250) });
/// assert!(Retry::builder().attempts(0).build().unwrap_err().contains("attempts"));
/// # Ok::<(), String>(())
/// ```
#[macro_export]
macro_rules! config_builder {
    (
        $(#[$battr:meta])*
        $target:ident $( ( $($arg:ident : $argty:ty),* $(,)? ) )? => $builder:ident, $error:ty {
            $( $field:ident : $ty:ty $(=> $conv:ident)? ),* $(,)?
        }
        $(starting from $start:expr)?
    ) => {
        $(#[$battr])*
        #[derive(Debug, Clone)]
        #[must_use = "a builder does nothing until `build` is called"]
        pub struct $builder {
            config: $target,
        }

        impl $target {
            #[doc = concat!(
                "A builder (from the defaults, and the required values given here); its `build` validates (see [`",
                stringify!($builder), "`])."
            )]
            pub fn builder($($($arg: $argty),*)?) -> $builder {
                $builder { config: $crate::config_builder!(@start $target $(, $start)?) }
            }
        }

        impl From<$target> for $builder {
            fn from(config: $target) -> Self {
                Self { config }
            }
        }

        impl $builder {
            $( $crate::config_builder!(@setter $target, $field, $ty $(, $conv)?); )*

            #[doc = concat!(
                "The [`", stringify!($target), "`], or the error of its `validate` ",
                "naming the first bad field."
            )]
            pub fn build(self) -> ::core::result::Result<$target, $error> {
                self.config.validate()?;
                ::core::result::Result::Ok(self.config)
            }
        }
    };
    (@start $target:ident) => { <$target as ::core::default::Default>::default() };
    (@start $target:ident, $start:expr) => { $start };
    (@setter $target:ident, $field:ident, $ty:ty) => {
        #[doc = concat!("Sets [`", stringify!($target), "::", stringify!($field), "`].")]
        pub fn $field(mut self, value: $ty) -> Self {
            self.config.$field = value;
            self
        }
    };
    (@setter $target:ident, $field:ident, $ty:ty, into) => {
        #[doc = concat!("Sets [`", stringify!($target), "::", stringify!($field), "`].")]
        pub fn $field(mut self, value: impl ::core::convert::Into<$ty>) -> Self {
            self.config.$field = ::core::convert::Into::into(value);
            self
        }
    };
    (@setter $target:ident, $field:ident, $ty:ty, $other:ident) => {
        compile_error!(concat!(
            "config_builder!: `", stringify!($field), ": ... => ", stringify!($other),
            "`: the only conversion is `into`"
        ));
    };
}
