"""Tissue label numbers of the numerical head phantom.

Shared by the anatomy (:mod:`qsmflow.phantom.geometry` and its painters) and the tissue
table :data:`qsmflow.phantom.TISSUES`.
"""

AIR, CSF, VENTRICLE, GM, WM = 0, 1, 2, 3, 4
CAUDATE, PUTAMEN, PALLIDUS, THALAMUS, RED_NUCLEUS, NIGRA, DENTATE = 5, 6, 7, 8, 9, 10, 11
CB_GM, CB_WM, BRAINSTEM, VEIN, SINUS, DURA = 12, 13, 14, 15, 16, 17
SOFT, FAT, BONE, MARROW, EYE, NERVE, CALCIFICATION, HAEMORRHAGE = 18, 19, 20, 21, 22, 23, 24, 25
