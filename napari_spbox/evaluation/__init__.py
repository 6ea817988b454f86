"""Robot-user evaluation: the field's standard clicker, the paper's protocol, NoC/NoF/mIoU
reports."""
