// A key/value-cache decoder's position: the uniform every kernel of a decoding step
// reads its token's position from (src/kernels/attention_decode.rs `DecodePosition`),
// written once before each step's submission, so the step's recorded dispatches
// never change. Not a module on its own: the Shader registry (src/kernels/mod.rs)
// prepends this text to the modules that bind it.
struct Position {
    at: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
