//! Loading and writing data: images, meshes (and their signed distances), posed-image scenes and
//! the camera maths they need.

pub mod camera;
pub mod image;
pub mod mesh;
pub mod scene;
pub mod sdf;
