//! Taking the parameters of a run (limits, split points) from the front
//! of the fuzzer's input, so that the fuzzer explores them too.

/// A cursor over the fuzzer's bytes.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the input.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// The next byte, 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes as a number.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// What is left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Where pieces of an input of `len` bytes end when it is cut at `cuts`
/// (taken modulo `len + 1` and sorted); the last end is `len`.
pub fn split_points(len: usize, cuts: &[u16]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| if len == 0 { 0 } else { c as usize % (len + 1) })
        .collect();
    points.push(len);
    points.sort_unstable();
    points
}
