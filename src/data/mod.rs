//! Loading and writing data: images now; meshes and posed-image scenes follow.

pub mod image;
pub mod mesh;
pub mod sdf;
