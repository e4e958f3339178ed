"""The Tensor layer: the Tensor object, dispatch, the API functions and factories."""
