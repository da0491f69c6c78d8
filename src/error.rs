//! The one error type of wgml. Every fallible function returns [`Result`].
//!
//! Messages say what went wrong and, where there is one, what to do about it.

/// Result alias used throughout wgml.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in wgml.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter at all was found on the requested backends.
    #[error(
        "no GPU adapter found on backends {backends}. On Linux without a GPU, install the \
         lavapipe software Vulkan driver (`apt-get install mesa-vulkan-drivers`); otherwise \
         check the GPU driver, or try another backend with --backend / WGML_BACKEND"
    )]
    NoAdapter {
        /// The backends that were searched, as wgpu prints them.
        backends: String,
    },

    /// `--adapter SUBSTRING` matched none of the adapters found.
    #[error("no adapter name contains '{wanted}'; adapters found: {found}")]
    AdapterNotFound {
        /// The substring given with `--adapter`.
        wanted: String,
        /// The names and backends of the adapters that were found, comma-separated.
        found: String,
    },

    /// An unknown backend name was given.
    #[error("unknown backend '{0}': use one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),

    /// The adapter refused to create a device.
    #[error("could not create a device on '{adapter}': {message}")]
    RequestDevice {
        /// Name of the adapter that refused.
        adapter: String,
        /// wgpu's error message.
        message: String,
    },

    /// wgpu reported a validation or internal error while doing `context`.
    #[error("GPU error while {context}: {message}")]
    Gpu {
        /// What wgml was doing when the error was reported.
        context: String,
        /// wgpu's error message.
        message: String,
    },

    /// The device ran out of memory while doing `context`.
    #[error(
        "GPU out of memory while {context}; use a smaller batch size or model, or a GPU with more memory"
    )]
    OutOfMemory {
        /// What wgml was doing when memory ran out.
        context: String,
    },

    /// The device was lost (driver reset, GPU removed, destroyed).
    #[error("the GPU device was lost ({reason}): {message}; create a new Context to continue")]
    DeviceLost {
        /// wgpu's reason for the loss.
        reason: String,
        /// wgpu's message about the loss.
        message: String,
    },

    /// Shapes passed to an op do not fit together.
    #[error("{op}: {message}")]
    Shape {
        /// Name of the op.
        op: &'static str,
        /// What does not fit.
        message: String,
    },

    /// A tensor or buffer would exceed what the device can bind or allocate.
    #[error(
        "{what} needs {bytes} bytes, more than this device allows in one buffer binding \
         ({limit} bytes); use a smaller batch or layer, or an adapter that binds more \
         (`wgml info` shows max_storage_buffer_binding_size: lavapipe binds 128 MiB, discrete \
         GPUs 2 to 4 GiB)"
    )]
    TooLarge {
        /// Description of the tensor or buffer.
        what: String,
        /// Bytes it would need.
        bytes: u64,
        /// The device's limit, in bytes.
        limit: u64,
    },

    /// A tensor of the wrong element type was passed.
    #[error("{op}: expected a {expected} tensor for {what}, got {got}")]
    DType {
        /// Name of the op.
        op: &'static str,
        /// Which operand of the op had the wrong type.
        what: &'static str,
        /// Name of the element type the op expected.
        expected: &'static str,
        /// Name of the element type the tensor has.
        got: &'static str,
    },

    /// Reading a buffer back from the GPU failed.
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),

    /// A WGSL shader failed to parse or validate.
    #[error("shader {shader} is invalid: {message}")]
    Shader {
        /// Name of the shader.
        shader: &'static str,
        /// The parse or validation error.
        message: String,
    },

    /// An argument outside its allowed range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A data file has the wrong format.
    #[error("{path}: {message}")]
    Data {
        /// The file (or data set name) at fault.
        path: String,
        /// What is wrong with its format.
        message: String,
    },

    /// Training diverged.
    #[error("training stopped: {0}")]
    Training(String),

    /// A report picture (or the font it needs) could not be drawn or written.
    #[error("{path}: {message}")]
    Report {
        /// The picture or font file, or `font` when no font was found.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Shorthand for a [`Error::Shape`] error.
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// A [`Error::Data`] error re-pointed at the file `path`, its message prefixed by
    /// `context` (when not empty); any other error unchanged. For errors about
    /// tensors that came from a file (e.g. [`crate::nn::Model::load_params`]).
    pub fn in_file(self, path: &std::path::Path, context: &str) -> Self {
        match self {
            Error::Data { message, .. } => Error::Data {
                path: path.display().to_string(),
                message: if context.is_empty() {
                    message
                } else {
                    format!("{context}: {message}")
                },
            },
            other => other,
        }
    }
}
