//! A per-backend nesting counter for hooks that must tell a top-level statement from the queries
//! run inside it (cross_audit.rs's executor and utility hooks, routing.rs's planner hook).
//!
//! Those hooks are unguarded and hold nothing to drop, so a PostgreSQL ERROR passes through them
//! without running the code that would decrement the counter; instead, an aborted transaction
//! resets it and an aborted subtransaction puts back the value it had when it started. Each user
//! registers its own (sub)transaction callbacks and forwards the events here.

use pgrx::pg_sys;
use std::cell::{Cell, RefCell};

pub struct Nesting {
    depth: Cell<u32>,
    /// The depth at the start of each open subtransaction, by its id.
    at_start: RefCell<Vec<(pg_sys::SubTransactionId, u32)>>,
}

// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl Sync for Nesting {}

impl Nesting {
    pub const fn new() -> Nesting {
        Nesting {
            depth: Cell::new(0),
            at_start: RefCell::new(Vec::new()),
        }
    }

    #[inline(always)]
    pub fn get(&self) -> u32 {
        self.depth.get()
    }

    #[inline(always)]
    pub fn set(&self, depth: u32) {
        self.depth.set(depth)
    }

    /// An aborted transaction unwinds every statement (a COMMIT inside a procedure does not).
    pub fn on_xact(&self, event: pg_sys::XactEvent::Type) {
        if event == pg_sys::XactEvent::XACT_EVENT_ABORT
            || event == pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        {
            self.depth.set(0);
        }
        if event != pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT {
            self.at_start.borrow_mut().clear();
        }
    }

    /// A subtransaction's abort puts back the depth it started at.
    pub fn on_subxact(&self, event: pg_sys::SubXactEvent::Type, subid: pg_sys::SubTransactionId) {
        let mut stack = self.at_start.borrow_mut();
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_START_SUB => stack.push((subid, self.depth.get())),
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB
            | pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
                if let Some(at) = stack.iter().rposition(|(id, _)| *id == subid) {
                    let (_, depth) = stack[at];
                    stack.truncate(at);
                    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
                        self.depth.set(depth);
                    }
                }
            }
            _ => {}
        }
    }
}
