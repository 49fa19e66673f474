"""Datasets shipped with hptune (package data, read via `importlib.resources`).

digits.npz
    The UCI "Optical Recognition of Handwritten Digits" data set (E. Alpaydin,
    C. Kaynak, 1998; https://doi.org/10.24432/C50P49), licensed CC BY 4.0, in
    the 8x8 version that ships with scikit-learn as `load_digits()`:
    1797 images, 64 pixel features with integer values 0..16, labels 0..9.

    Arrays: `X` uint8 of shape (1797, 64) and `y` int64 of shape (1797,).
    It was converted once, offline, from the copy bundled with scikit-learn
    1.9.1 (scikit-learn is not a dependency of hptune; this file is the data):

        import numpy as np
        from sklearn.datasets import load_digits
        d = load_digits()
        X = d.data.astype(np.uint8)          # exact: the values are 0..16
        assert (X == d.data).all()
        np.savez_compressed("hptune/datasets/digits.npz",
                            X=X, y=d.target.astype(np.int64))
"""
