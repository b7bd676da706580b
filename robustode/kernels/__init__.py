"""Autograd kernels: layers' derivatives in closed form, where torch's generic ones cost more than the maths.

    from robustode.kernels import closed_form_double_backward
    with closed_form_double_backward():            # batch norm, convolution and ReLU
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
"""

from .double_backward import closed_form_double_backward

__all__ = ["closed_form_double_backward"]
