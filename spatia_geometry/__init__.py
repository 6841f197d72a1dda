"""Camera and geometry math shared by the backend (`spatia`) and the Blender extension
(`spatia_blender`), owned by neither: numpy only, no torch, no bpy. The extension's build
bundles it as a wheel in the extension's zip."""
